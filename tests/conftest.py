"""Shared fixtures live in tests/fixtures/ (on sys.path through pytest's `pythonpath`)."""

pytest_plugins: list[str] = [
    "fixtures.git_servers",
    "fixtures.lfs_server",
    "fixtures.model_repos",
    "fixtures.cluster",
    "fixtures.operator",
    "fixtures.helm",
    "fixtures.runtime_server",
    "fixtures.postgres",
    "fixtures.registry",
]
