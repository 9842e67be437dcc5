"""The request pipeline: request id → access log → authenticate → resolve tenant → authorise → rate limit →
validate → handler → telemetry.

The outer steps (request id, error rendering, access log, CORS, security headers, telemetry) run for every
request as one middleware (:mod:`request_scope`). The inner steps depend on the route's access group and are
composed around each handler when the route is registered (:mod:`route_steps`), so a route pays only for the
steps it needs.
"""
