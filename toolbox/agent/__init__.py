"""The host agent: a background process per running machine that follows the engine's events
and keeps the host in step with the guest (published ports on 127.0.0.1, shared folders).

Only its pure planning logic exists so far (``toolbox.agent.plan``); the process itself is
issue 8's next step."""
