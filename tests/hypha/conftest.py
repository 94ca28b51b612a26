"""Fixtures of the tests against Hypha (tests/hypha/run.sh starts the services): ``svc``, the
services' env file, once a session; ``env``, a scratch work area with git against them. A
module with other needs (test_stock.py: the Hypha without the plugin) defines its own."""

import pytest

from test_hypha import Env, _load_env


@pytest.fixture(scope="session")
def svc():
    return _load_env()


@pytest.fixture
def env(tmp_path, svc):
    return Env(tmp_path, svc)
