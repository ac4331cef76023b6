"""oarsub on an emulated cluster, in the order OAR does it: normalise the API's payload into
oarsub's options, validate them against oarsub and the default admission rules (each refusal with
OAR's exit status and message), and expand them (bash double-quote evaluation of the command,
directory and file names; array and parameter-file sub-jobs; the job's message and properties) into
a `JobPlan`. `Cluster.submit` enqueues the plan; nothing here touches the cluster's state."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from cigri.emulator.jobs import (
    ADMISSION_CHATTER,
    BAD_OUTPUT_NAME,
    KNOWN_TYPE,
    NO_SUBJOB,
    OARSUB_OPTIONS,
    QUEUES,
    ApiError,
    ClusterConfig,
    Job,
)
from cigri.emulator.resources import (
    DEFAULT_WALLTIME,
    ResourceRequest,
    ResourceSyntaxError,
    UnknownProperty,
    format_walltime,
    group_shape,
    parse_resource,
)

DEAD_PID = 4_194_399  # above the largest pid_max Linux allows (2**22)
SPECIAL_PARAMETERS = {"0": "bash", "#": "0", "?": "0", "-": "hBc"}  # others ("$1", "$@", ...) are empty
NOT_SENT = ("dumper", "xml", "yaml", "json", "help", "version")  # API output options, not oarsub's
ALIASES = (("resources", "resource"), ("workdir", "directory"), ("types", "type"))  # OAR 3 names


def expand_shell(text: str, env: dict[str, str]) -> str:
    """One level of bash double-quote evaluation, as oarsub's shell does at submission:
    `\\$`, `\\\\`, `\\"` and `` \\` `` lose their backslash, `$VAR`/`${VAR}` expand (unknown ones to
    ""), `$0` is `bash` and `$1`... are empty, `$$` becomes a dead pid, and command substitutions
    `$(...)` and backquotes are left as they are."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in '$`"\\':
            out.append(text[i + 1])
            i += 2
        elif ch == "$" and i + 1 < n and text[i + 1] == "$":
            # the pid of oarsub's shell, long gone when the job runs: a pid that cannot exist, so
            # a job's `kill $$` fails as on the real OAR and never hits the emulator
            out.append(str(DEAD_PID))
            i += 2
        elif ch == "$" and i + 1 < n and (text[i + 1].isdigit() or text[i + 1] in "#?@*!-"):
            # positional and special parameters of oarsub's `bash -c` (no arguments)
            out.append(SPECIAL_PARAMETERS.get(text[i + 1], ""))
            i += 2
        elif ch == "$" and i + 1 < n and text[i + 1] == "{":
            end = text.find("}", i + 2)
            if end < 0:
                out.append(ch)
                i += 1
            else:
                out.append(env.get(text[i + 2 : end], ""))
                i = end + 1
        elif ch == "$" and i + 1 < n and (text[i + 1].isalpha() or text[i + 1] == "_"):
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            out.append(env.get(text[i + 1 : j], ""))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def read_param_lines(content: str) -> list[str]:
    """oarsub's parameter-file reading: `#` comments removed, blank lines skipped."""
    lines = []
    for raw in content.split("\n"):
        line = raw.split("#", 1)[0]
        if line.strip():
            lines.append(line)
    return lines


@dataclass(frozen=True, kw_only=True)
class JobPlan:
    """What an accepted oarsub creates: its jobs, one per sub-job of the array, not numbered yet
    (`id` and `array_id` are 0 until the cluster enqueues them), and oarsub's output so far."""

    jobs: list[Job]
    output: str  # the admission rules' chatter; the job ids follow


@dataclass(frozen=True)
class _Oarsub:
    """One oarsub call being checked: its options, and how its failures read on this version."""

    config: ClusterConfig
    login: str
    body: dict[str, Any]
    command: str
    param_file: Any
    cmdline: str

    def fail(self, status: int, output: str) -> ApiError:
        return oarsub_error(self.config.oar_version, status, output, self.cmdline)


def oarsub_error(version: str, status: int, output: str, cmdline: str) -> ApiError:
    """oarsub's exit status mapped to HTTP, with the version's message format."""
    v259 = version != "2.5.10"
    bad_query = {4, 5, 6, 7, 8, 10, 16, 17} | (set() if v259 else {18, 254})
    if not output.endswith("\n"):
        output += "\n"
    message = f"Oarsub command exited with status {status}: {output}\nCmd:\n{cmdline}" if v259 else output
    if status in bad_query:
        return ApiError(400, "Bad query", message)
    if status == 52:
        return ApiError(401, "Permission denied", f"Oardodo error: 52: {output}")
    return ApiError(500, "Oar server error", message)


def request_cores(config: ClusterConfig, request: ResourceRequest) -> int | None:
    """Total cores a request needs, or None if the cluster can never satisfy it."""
    total = 0
    for group in request.groups:
        node_count, per = group_shape(group, nodes=config.nodes, cores=config.cores)
        if node_count is not None:
            if node_count > config.nodes or per > config.cores or node_count <= 0 or per <= 0:
                return None
            total += node_count * per
        else:
            if per <= 0:
                return None
            total += per
    return total if total <= config.nodes * config.cores else None


def plan_submission(config: ClusterConfig, login: str, home: str | None, payload: dict[str, Any],
                    now: int) -> JobPlan:
    """oarsub: normalise, validate, expand; raises the `ApiError` OAR would answer."""
    oarsub = normalise(config, login, payload)
    home = validate_caller(oarsub, home)
    env = {"HOME": home, "USER": login, "LOGNAME": login}
    command = expand_shell(oarsub.command, env)
    directory = _directory(oarsub, home, env)
    queue, types, output = _queue_and_types(oarsub.body)
    request, output = validate_admission(oarsub, queue, types, output)
    output += ADMISSION_CHATTER
    params = _params(oarsub)
    name, stdout, stderr = _output_files(oarsub, env, output)
    project = str(oarsub.body.get("project", "default"))
    if len(params) > 1:
        output += "Simple array job submission is used\n"
    properties = _properties(oarsub.body, queue)
    initial_request = _initial_request(oarsub, command)
    message = _message(config, request, name, project, types)
    state = "Hold" if str(oarsub.body.get("hold", "0")) not in ("0", "false", "False") else "Waiting"
    jobs = [
        Job(id=0, array_id=0, array_index=index, name=name, owner=login, queue=queue,
            types=list(types), command=command if param is None else f"{command} {param}",
            param=param, launching_directory=directory, stdout_tpl=stdout, stderr_tpl=stderr,
            project=project, properties=properties, initial_request=initial_request,
            request=request, message=message, submission_time=now, state=state)
        for index, param in enumerate(params, start=1)
    ]
    return JobPlan(jobs=jobs, output=output)


# ---- normalise ---------------------------------------------------------------------------------


def normalise(config: ClusterConfig, login: str, payload: dict[str, Any]) -> _Oarsub:
    """The API's payload as oarsub options: empty values dropped, OAR 3 names mapped, the command
    and parameter file taken out; refuses a payload with nothing to run, or an interactive job."""
    body = {k: v for k, v in payload.items() if v not in ("", None)}
    for key in NOT_SENT:
        body.pop(key, None)
    for alias, key in ALIASES:
        if alias in body and key not in body:
            body[key] = body[alias]
        body.pop(alias, None)
    command = body.pop("command", None) or body.pop("script_path", None) or body.pop("script", None)
    if not command and "reservation" not in body:
        raise ApiError(
            400,
            "Missing Required Field",
            "A job must have a script, a command (script_path) or must be a reservation!",
        )
    if "interactive" in body:
        raise ApiError(
            400, "The API cannot manage interactive jobs", "The API cannot manage interactive jobs"
        )
    param_file = body.pop("param_file", None)
    cmdline = "oarsub " + "".join(f' --{k}=\\"{v}\\"' for k, v in body.items()) + f' \\"{command}\\"'
    if param_file is not None:
        cmdline += " --array-param-file=/tmp/oarapi.paramfile.XXXXX"
    return _Oarsub(config, login, body, str(command), param_file, cmdline)


# ---- validate ----------------------------------------------------------------------------------


def validate_caller(oarsub: _Oarsub, home: str | None) -> str:
    """Admission rule 2 (no root/oar), a login the cluster knows, and only oarsub's options
    (unambiguous prefixes allowed); the caller's home."""
    if oarsub.login in ("oar", "root"):  # Unix users everywhere; refused by admission rule 2
        raise oarsub.fail(254, "[ADMISSION RULE] root and oar users are not allowed to submit jobs.\n")
    if home is None:
        raise ApiError(
            401,
            "Permission denied",
            "Oardodo error: 52: [OARDODO] ERROR: Cannot get information regarding the target user "
            "(Success)\n\n",
        )
    for key in oarsub.body:
        matches = [o for o in OARSUB_OPTIONS if o == key] or [
            o for o in OARSUB_OPTIONS if o.startswith(key)
        ]
        if len(matches) != 1:
            raise oarsub.fail(1, f"Unknown option: {key}")
    return home


def validate_admission(oarsub: _Oarsub, queue: str, types: list[str],
                       output: str) -> tuple[ResourceRequest, str]:
    """The resource request, job types and queue as the default admission rules check them, in
    OAR's order; (the request, the output with the walltime chatter)."""
    resource_value = oarsub.body.get("resource")
    if isinstance(resource_value, list):  # moldable (OAR 3 style): the first alternative
        resource_value = resource_value[0] if resource_value else None
    try:
        request = parse_resource(None if resource_value is None else str(resource_value))
        unknown_property = None
    except ResourceSyntaxError as error:
        raise oarsub.fail(18 if oarsub.config.oar_version == "2.5.10" else 255, str(error)) from None
    except UnknownProperty as error:
        unknown_property = str(error)
        request = parse_resource(None)
        if "walltime=" in str(resource_value):  # only the walltime chatter depends on it
            request = dataclasses.replace(request, walltime=0)
    if request.walltime is None:
        output += "[ADMISSION RULE] Set default walltime to 7200.\n"
    for type_ in types:
        if not KNOWN_TYPE.match(type_):
            raise oarsub.fail(254, output + f"[ADMISSION RULE] Error: unknown job type: {type_}\n")
    if queue not in QUEUES:
        raise oarsub.fail(248, output + ADMISSION_CHATTER + f"ERROR : The queue {queue} does not exist")
    if unknown_property is not None:
        raise oarsub.fail(
            8,
            output
            + ADMISSION_CHATTER
            + f'Bad resource request (ERROR:  column "{unknown_property}" does not exist\n'
            f"LINE 1: SELECT  {unknown_property}, resource_id\n                )\nOAR_JOB_ID=-5\n"
            "[ERROR] Oarsub failed, please verify your request syntax.\n",
        )
    if request_cores(oarsub.config, request) is None:
        raise oarsub.fail(
            8,
            output + ADMISSION_CHATTER + "There are not enough resources for your request\n"
            "OAR_JOB_ID=-5\n[ERROR] Oarsub failed, please verify your request syntax.\n",
        )
    return request, output


# ---- expand ------------------------------------------------------------------------------------


def _directory(oarsub: _Oarsub, home: str, env: dict[str, str]) -> str:
    directory = expand_shell(str(oarsub.body.get("directory", home)), env)
    if not os.path.isabs(directory):
        directory = os.path.join(home, directory)
    if oarsub.config.oar_version == "2.5.10" and not os.path.isdir(directory):
        raise oarsub.fail(1, f"bash: line 1: cd: {directory}: No such file or directory")
    return directory


def _queue_and_types(body: dict[str, Any]) -> tuple[str, list[str], str]:
    """(queue, job types, chatter): a besteffort type or queue means both."""
    types_value = body.get("type", [])
    types = [types_value] if isinstance(types_value, str) else [str(t) for t in types_value]
    queue = str(body.get("queue", "default"))
    output = ""
    if "besteffort" in types or queue == "besteffort":
        queue = "besteffort"
        if "besteffort" not in types:
            types.append("besteffort")
        output += (
            "[ADMISSION RULE] Automatically redirect in the besteffort queue\n"
            "[ADMISSION RULE] Automatically add the besteffort constraint on the resources\n"
        )
    return queue, types, output


def _params(oarsub: _Oarsub) -> list[str | None]:
    """One entry per sub-job: the parameter file's lines, `array` times None, or one None."""
    body = oarsub.body
    if oarsub.param_file is not None:
        params: list[str | None] = list(read_param_lines(str(oarsub.param_file)))
        if not params:
            raise oarsub.fail(6, NO_SUBJOB)
        return params
    if "array" in body:
        count = int(str(body["array"])) if str(body["array"]).isdigit() else 0
        if count <= 0:
            raise oarsub.fail(6, NO_SUBJOB)
        return [None] * count
    return [None]


def _output_files(oarsub: _Oarsub, env: dict[str, str],
                  output: str) -> tuple[str | None, str, str]:
    """(name, stdout, stderr) expanded, `%jobname%` replaced; bad characters refused."""
    body = oarsub.body
    name = expand_shell(str(body["name"]), env) if "name" in body else None
    default_out = f"OAR.{name}.%jobid%" if name else "OAR.%jobid%"
    stdout = expand_shell(str(body.get("stdout", default_out + ".stdout")), env)
    stderr = expand_shell(str(body.get("stderr", default_out + ".stderr")), env)
    if name:
        stdout, stderr = stdout.replace("%jobname%", name), stderr.replace("%jobname%", name)
    for value, status, what in ((stdout, 244, "stdout"), (stderr, 243, "stderr")):
        if BAD_OUTPUT_NAME.search(value):  # add_micheline_job: -12 / -13
            raise oarsub.fail(status, output + f"[ERROR] Bad characters in the {what} file name")
    return name, stdout, stderr


def _properties(body: dict[str, Any], queue: str) -> str:
    props = "desktop_computing = 'NO'"
    if "property" in body:
        props = f"({body['property']}) AND {props}"
    if queue == "besteffort":
        props = f"(besteffort = 'YES') AND {props}"
    return f"({props}) AND drain='NO'"


def _message(config: ClusterConfig, request: ResourceRequest, name: str | None, project: str,
             types: list[str]) -> str:
    cores = request_cores(config, request) or 1
    message = f"R={cores},W={format_walltime(request.walltime or DEFAULT_WALLTIME)},J=B"
    if name:
        message += f",N={name}"
    if project != "default":
        message += f",P={project}"
    if types:
        message += f",T={'|'.join(types)}"
    return message


def _initial_request(oarsub: _Oarsub, command: str) -> str:
    initial = " ".join(["oarsub", *(f"--{k}={v}" for k, v in oarsub.body.items())])
    request = f"{initial} {command}"
    if oarsub.param_file is not None:
        request += " --array-param-file=/tmp/oarapi.paramfile.XXXXX"
    return request
