"""The handler time-out (innermost): `JobConfig.handler_timeout` for every route that sets it."""
