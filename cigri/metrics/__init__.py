"""Prometheus metrics of the whole grid (docs/metrics.md): `collector` builds them from the
database at each scrape, `server` serves them on a port of their own (`cigri metrics serve`);
`cigri.api.metrics` serves them on the API at `/metrics`."""
