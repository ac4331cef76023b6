"""Create the cigri schema (baseline)

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 14:37:01.229334
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op



revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('admission_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('enabled', sa.Boolean(), server_default='1', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admission_rules'))
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('grid_user', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('token_hash', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_grid_user'), ['grid_user'], unique=False)

    op.create_table('campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('grid_user', sa.String(length=255), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=255), server_default='normal', nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('submission_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completion_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('nb_jobs', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('jdl', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns'))
    )
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaigns_grid_user'), ['grid_user'], unique=False)
        batch_op.create_index(batch_op.f('ix_campaigns_state'), ['state'], unique=False)

    op.create_table('clusters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('api_url', sa.String(length=255), nullable=False),
    sa.Column('api_auth_type', sa.String(length=16), server_default='header', nullable=False),
    sa.Column('api_username', sa.String(length=255), nullable=True),
    sa.Column('api_password', sa.String(length=255), nullable=True),
    sa.Column('api_auth_header', sa.String(length=255), nullable=True),
    sa.Column('api_chunk_size', sa.Integer(), server_default='100', nullable=False),
    sa.Column('api_limit', sa.Integer(), server_default='100', nullable=False),
    sa.Column('api_timeout_seconds', sa.Float(), nullable=True),
    sa.Column('ssh_host', sa.String(length=255), nullable=True),
    sa.Column('batch', sa.String(length=16), server_default='oar2_5', nullable=False),
    sa.Column('resource_unit', sa.String(length=255), server_default='resource_id', nullable=True),
    sa.Column('power', sa.Integer(), nullable=True),
    sa.Column('properties', sa.String(length=255), nullable=True),
    sa.Column('stress_factor', sa.Float(), server_default='0', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default='1', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clusters')),
    sa.UniqueConstraint('name', name=op.f('uq_clusters_name'))
    )
    op.create_table('daemon_heartbeats',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('beat_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('interval_seconds', sa.Float(), nullable=False),
    sa.Column('passes', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('failures', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_daemon_heartbeats'))
    )
    op.create_table('daemon_leases',
    sa.Column('role', sa.String(length=255), nullable=False),
    sa.Column('owner', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('role', name=op.f('pk_daemon_leases'))
    )
    op.create_table('notification_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('dedup_key', sa.String(length=255), nullable=False),
    sa.Column('grid_user', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('identity', sa.String(length=1024), nullable=False),
    sa.Column('format', sa.String(length=32), nullable=True),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_messages')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_notification_messages_dedup_key'))
    )
    with op.batch_alter_table('notification_messages', schema=None) as batch_op:
        batch_op.create_index('ix_notification_messages_state_next', ['state', 'next_attempt_at'], unique=False)

    op.create_table('user_notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('grid_user', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('identity', sa.String(length=1024), nullable=False),
    sa.Column('severity', sa.String(length=16), server_default='low', nullable=False),
    sa.Column('format', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_notifications')),
    sa.UniqueConstraint('grid_user', 'identity', 'type', name='uq_user_notifications_subscription')
    )
    op.create_table('campaign_properties',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_properties_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_campaign_properties_cluster_id_clusters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_properties'))
    )
    with op.batch_alter_table('campaign_properties', schema=None) as batch_op:
        batch_op.create_index('ix_campaign_properties_campaign_cluster', ['campaign_id', 'cluster_id', 'name'], unique=False)

    op.create_table('grid_usage',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('max_resources', sa.Integer(), nullable=True),
    sa.Column('used_resources', sa.Integer(), nullable=True),
    sa.Column('unavailable_resources', sa.Integer(), nullable=True),
    sa.Column('used_by_cigri', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_grid_usage_cluster_id_clusters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grid_usage'))
    )
    with op.batch_alter_table('grid_usage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_grid_usage_date'), ['date'], unique=False)

    op.create_table('parameters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('param', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_parameters_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_parameters')),
    sa.UniqueConstraint('campaign_id', 'name', name='uq_parameters_campaign_name')
    )
    op.create_table('queue_counts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('jobs_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_queue_counts_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_queue_counts_cluster_id_clusters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queue_counts'))
    )
    op.create_table('submissions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('nb_jobs', sa.Integer(), nullable=False),
    sa.Column('remote_array_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_submissions_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_submissions_cluster_id_clusters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_submissions')),
    sa.UniqueConstraint('key', name=op.f('uq_submissions_key'))
    )
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.create_index('ix_submissions_cluster_state', ['cluster_id', 'state'], unique=False)

    op.create_table('taps',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='open', nullable=False),
    sa.Column('rate', sa.Integer(), nullable=False),
    sa.Column('close_date', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_taps_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_taps_cluster_id_clusters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_taps')),
    sa.UniqueConstraint('cluster_id', 'campaign_id', name='uq_taps_cluster_campaign')
    )
    op.create_table('users_mapping',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('grid_login', sa.String(length=255), nullable=False),
    sa.Column('cluster_login', sa.Text(), nullable=True),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_users_mapping_cluster_id_clusters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users_mapping')),
    sa.UniqueConstraint('grid_login', 'cluster_id', name='uq_users_mapping_login_cluster')
    )
    op.create_table('users_priority',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('grid_user', sa.String(length=255), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_users_priority_cluster_id_clusters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users_priority')),
    sa.UniqueConstraint('grid_user', 'cluster_id', name='uq_users_priority_user_cluster')
    )
    op.create_table('bag_of_tasks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('param_id', sa.BigInteger(), nullable=False),
    sa.Column('priority', sa.Integer(), server_default='10', nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_bag_of_tasks_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['param_id'], ['parameters.id'], name=op.f('fk_bag_of_tasks_param_id_parameters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bag_of_tasks'))
    )
    with op.batch_alter_table('bag_of_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_bag_of_tasks_campaign_priority', ['campaign_id', 'priority', 'id'], unique=False)
        batch_op.create_index('ix_bag_of_tasks_param_id', ['param_id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('param_id', sa.BigInteger(), nullable=True),
    sa.Column('batch_id', sa.BigInteger(), nullable=True),
    sa.Column('cluster_id', sa.Integer(), nullable=True),
    sa.Column('collect_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('return_code', sa.Integer(), nullable=True),
    sa.Column('submission_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('start_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stop_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('node_name', sa.String(length=255), nullable=True),
    sa.Column('resources_used', sa.Integer(), nullable=True),
    sa.Column('remote_id', sa.BigInteger(), nullable=True),
    sa.Column('tag', sa.String(length=255), nullable=True),
    sa.Column('runner_options', sa.Text(), nullable=True),
    sa.Column('submission_id', sa.BigInteger(), nullable=True),
    sa.Column('array_index', sa.Integer(), nullable=True),
    sa.Column('attempt', sa.Integer(), server_default='1', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_jobs_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_jobs_cluster_id_clusters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['param_id'], ['parameters.id'], name=op.f('fk_jobs_param_id_parameters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['submission_id'], ['submissions.id'], name=op.f('fk_jobs_submission_id_submissions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_campaign_state', ['campaign_id', 'state'], unique=False)
        batch_op.create_index('ix_jobs_cluster_state', ['cluster_id', 'state'], unique=False)
        batch_op.create_index('ix_jobs_param_id', ['param_id'], unique=False)
        batch_op.create_index('ix_jobs_remote', ['cluster_id', 'remote_id'], unique=False)
        batch_op.create_index('ix_jobs_state', ['state'], unique=False)
        batch_op.create_index('ix_jobs_submission_id', ['submission_id'], unique=False)

    op.create_table('tasks_affinity',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('param_id', sa.BigInteger(), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_tasks_affinity_cluster_id_clusters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['param_id'], ['parameters.id'], name=op.f('fk_tasks_affinity_param_id_parameters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks_affinity')),
    sa.UniqueConstraint('param_id', 'cluster_id', name='uq_tasks_affinity_param_cluster')
    )
    op.create_table('collected_files',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('remote_path', sa.Text(), nullable=False),
    sa.Column('local_path', sa.Text(), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('collected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_collected_files_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_collected_files_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collected_files')),
    sa.UniqueConstraint('job_id', 'remote_path', name='uq_collected_files_job_path')
    )
    with op.batch_alter_table('collected_files', schema=None) as batch_op:
        batch_op.create_index('ix_collected_files_campaign_state', ['campaign_id', 'state'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('class', sa.String(length=16), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='open', nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('cluster_id', sa.Integer(), nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('parent', sa.BigInteger(), nullable=True),
    sa.Column('checked', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('notified', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('date_open', sa.DateTime(timezone=True), nullable=True),
    sa.Column('date_closed', sa.DateTime(timezone=True), nullable=True),
    sa.Column('date_update', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_events_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_events_cluster_id_clusters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_events_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['parent'], ['events.id'], name=op.f('fk_events_parent_events'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_campaign_state', ['campaign_id', 'state'], unique=False)
        batch_op.create_index('ix_events_cluster_state', ['cluster_id', 'state'], unique=False)
        batch_op.create_index('ix_events_job_id', ['job_id'], unique=False)
        batch_op.create_index('ix_events_notified', ['notified'], unique=False)
        batch_op.create_index('ix_events_state_checked', ['state', 'checked'], unique=False)

    op.create_table('jobs_to_launch',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('task_id', sa.BigInteger(), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=255), nullable=True),
    sa.Column('queuing_date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('runner_options', sa.Text(), nullable=True),
    sa.Column('order_num', sa.Integer(), server_default='1', nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_jobs_to_launch_cluster_id_clusters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['bag_of_tasks.id'], name=op.f('fk_jobs_to_launch_task_id_bag_of_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs_to_launch')),
    sa.UniqueConstraint('task_id', name=op.f('uq_jobs_to_launch_task_id'))
    )
    with op.batch_alter_table('jobs_to_launch', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_to_launch_cluster_order', ['cluster_id', 'order_num', 'id'], unique=False)

    op.create_table('campaign_job_counts',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('terminated_tasks', sa.BigInteger(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_job_counts_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', name=op.f('pk_campaign_job_counts'))
    )
    if op.get_bind().dialect.name == 'postgresql':
        for statement in _JOB_COUNT_TRIGGERS:
            op.execute(statement)




# Terminated tasks per campaign (prologue/epilogue jobs have a NULL param_id and do not count),
# maintained per statement from the transition tables: one upsert per campaign per statement, and
# only statements that move jobs into or out of `terminated` touch the counter row.
_JOB_COUNT_TRIGGERS = [
    """
    CREATE FUNCTION cigri_count_terminated_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO campaign_job_counts AS c (campaign_id, terminated_tasks)
            SELECT campaign_id, count(*) FROM new_rows
            WHERE state = 'terminated' AND param_id IS NOT NULL GROUP BY campaign_id
            ON CONFLICT (campaign_id)
            DO UPDATE SET terminated_tasks = c.terminated_tasks + EXCLUDED.terminated_tasks;
        ELSIF TG_OP = 'DELETE' THEN
            UPDATE campaign_job_counts AS c SET terminated_tasks = c.terminated_tasks - d.n
            FROM (SELECT campaign_id, count(*) AS n FROM old_rows
                  WHERE state = 'terminated' AND param_id IS NOT NULL GROUP BY campaign_id) AS d
            WHERE c.campaign_id = d.campaign_id;
        ELSE
            INSERT INTO campaign_job_counts AS c (campaign_id, terminated_tasks)
            SELECT n.campaign_id, sum(CASE WHEN n.state = 'terminated' THEN 1 ELSE -1 END)
            FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
            WHERE n.param_id IS NOT NULL
              AND (n.state = 'terminated') IS DISTINCT FROM (o.state = 'terminated')
            GROUP BY n.campaign_id
            ON CONFLICT (campaign_id)
            DO UPDATE SET terminated_tasks = c.terminated_tasks + EXCLUDED.terminated_tasks;
        END IF;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION cigri_count_terminated_tasks()",
    "CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION cigri_count_terminated_tasks()",
    "CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION cigri_count_terminated_tasks()",
]


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS jobs_count_insert ON jobs")
        op.execute("DROP TRIGGER IF EXISTS jobs_count_update ON jobs")
        op.execute("DROP TRIGGER IF EXISTS jobs_count_delete ON jobs")
        op.execute("DROP FUNCTION IF EXISTS cigri_count_terminated_tasks()")
    op.drop_table('campaign_job_counts')

    with op.batch_alter_table('jobs_to_launch', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_to_launch_cluster_order')

    op.drop_table('jobs_to_launch')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_state_checked')
        batch_op.drop_index('ix_events_notified')
        batch_op.drop_index('ix_events_job_id')
        batch_op.drop_index('ix_events_cluster_state')
        batch_op.drop_index('ix_events_campaign_state')

    op.drop_table('events')
    with op.batch_alter_table('collected_files', schema=None) as batch_op:
        batch_op.drop_index('ix_collected_files_campaign_state')

    op.drop_table('collected_files')
    op.drop_table('tasks_affinity')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_submission_id')
        batch_op.drop_index('ix_jobs_state')
        batch_op.drop_index('ix_jobs_remote')
        batch_op.drop_index('ix_jobs_param_id')
        batch_op.drop_index('ix_jobs_cluster_state')
        batch_op.drop_index('ix_jobs_campaign_state')

    op.drop_table('jobs')
    with op.batch_alter_table('bag_of_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_bag_of_tasks_param_id')
        batch_op.drop_index('ix_bag_of_tasks_campaign_priority')

    op.drop_table('bag_of_tasks')
    op.drop_table('users_priority')
    op.drop_table('users_mapping')
    op.drop_table('taps')
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_index('ix_submissions_cluster_state')

    op.drop_table('submissions')
    op.drop_table('queue_counts')
    op.drop_table('parameters')
    with op.batch_alter_table('grid_usage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_grid_usage_date'))

    op.drop_table('grid_usage')
    with op.batch_alter_table('campaign_properties', schema=None) as batch_op:
        batch_op.drop_index('ix_campaign_properties_campaign_cluster')

    op.drop_table('campaign_properties')
    op.drop_table('user_notifications')
    with op.batch_alter_table('notification_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_messages_state_next')

    op.drop_table('notification_messages')
    op.drop_table('daemon_leases')
    op.drop_table('daemon_heartbeats')
    op.drop_table('clusters')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaigns_state'))
        batch_op.drop_index(batch_op.f('ix_campaigns_grid_user'))

    op.drop_table('campaigns')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_grid_user'))

    op.drop_table('api_tokens')
    op.drop_table('admission_rules')

