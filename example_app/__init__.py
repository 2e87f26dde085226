"""Example: a user service called through Tasq by an HTTP gateway.

- `users`: the user service, a `TasqRouter` on topic "users";
- `gateway`: HTTP endpoints that call the user service through `Depends(get_tasq)`;
- `worker`: an app that only serves the user service (two-process form);
- `main`: gateway and user service in one app, with an embedded Redis when
  REDIS_URL is not set (`python -m example_app`).
"""
