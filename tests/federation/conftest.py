"""Hospital splits of the real hippocampus MRIs (symbolic links in a temporary folder)."""

import socket

import pytest

from tests.conftest import shared_data


@pytest.fixture(scope="session")
def hippocampus_split(tmp_path_factory):
    """Three small non-IID hospitals (5, 4, 3 cases) and a held-out set of 4, from MSD Task04."""
    from federation.fl.data import split_non_iid

    source = shared_data("msd_task04_hippocampus")
    return split_non_iid(source, tmp_path_factory.mktemp("hippo-split"), sizes=[5, 4, 3], held_out=4)


@pytest.fixture
def free_port():
    """A TCP port with a free neighbourhood (the SuperNodes use the next few)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < 60000:
            return port
    pytest.fail("no free port")


@pytest.fixture
def federation_settings(settings, tmp_path):
    settings.FEDERATION_DIR = tmp_path / "federation"
    settings.FEDERATION_DATASETS_ROOT = tmp_path / "datasets"
    settings.FEDERATION_THREADS_PER_CLIENT = 1
    return settings
