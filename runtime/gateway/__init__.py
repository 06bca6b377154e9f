"""The workspace gateway: one URL for every deployment, endpoint, alias, branch and version.

`routing` decides where a request goes (pure functions over a `Table`), `keys` checks API
keys, `app` is the ASGI app that forwards over HTTP and copies to mirrors, `config` loads
and reloads the table. docs/runtime.md ("Workspace gateway") describes it for users.
"""
