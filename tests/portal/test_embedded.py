"""The embedded services' command lines and credentials: checks that would otherwise fail silently."""

from __future__ import annotations

import json
import stat

import pytest

from portal import embedded
from portal.embedded import packstream
from portal.embedded.credentials import CREDENTIALS_FILE, credentials_load_or_create, seaweedfs_s3_config_write


def test_bolt_port_above_falkordb_range_is_refused():
    with pytest.raises(ValueError, match="32767"):
        embedded.check_bolt_port(37688)


def test_graph_redis_loads_falkordb_with_a_password_kept_out_of_the_command_line(tmp_path):
    argv = embedded.graph_redis_command(password="s3cret-pw", data_dir=tmp_path)
    config = tmp_path / "graph-redis.conf"

    assert "s3cret-pw" not in " ".join(argv)
    assert argv[-1] == str(config)
    text = config.read_text()
    assert "requirepass s3cret-pw" in text and f"BOLT_PORT {embedded.GRAPH_BOLT_PORT}" in text
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_broker_redis_binds_loopback_with_a_password(tmp_path):
    argv = embedded.broker_redis_command(port=6390, password="pw-1", data_dir=tmp_path)
    lines = (tmp_path / "broker-redis.conf").read_text().splitlines()

    assert "bind 127.0.0.1" in lines and "requirepass pw-1" in lines and "port 6390" in lines
    assert "pw-1" not in " ".join(argv)
    assert not any(line.startswith("loadmodule") for line in lines)


def test_seaweedfs_ports_derive_from_the_s3_port_and_never_use_fixed_extra_ports(tmp_path):
    argv = embedded.seaweedfs_command(s3_port=18333, data_dir=tmp_path)

    assert "-s3.port=18333" in argv
    # 8181 and 9101 are SeaweedFS's defaults for its Iceberg catalog and Lance namespace; two
    # instances would collide on them.
    assert "-s3.port.iceberg=0" in argv and "-s3.port.lance=0" in argv


def test_credentials_are_generated_once_private_and_reused(tmp_path):
    first = credentials_load_or_create(tmp_path)
    second = credentials_load_or_create(tmp_path)

    assert first == second
    assert len({first.redis_password, first.graph_redis_password, first.bolt_password, first.s3_secret_key}) == 4
    assert stat.S_IMODE((tmp_path / CREDENTIALS_FILE).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [CREDENTIALS_FILE]  # no temporary file left


def test_incomplete_credentials_file_is_refused_and_kept(tmp_path):
    path = tmp_path / CREDENTIALS_FILE
    path.write_text(json.dumps({"redis_password": "x"}))

    with pytest.raises(ValueError, match="not a complete"):
        credentials_load_or_create(tmp_path)
    assert json.loads(path.read_text()) == {"redis_password": "x"}


def test_s3_identity_file_has_the_key_pair_and_no_anonymous_identity(tmp_path):
    credentials = credentials_load_or_create(tmp_path)
    config = json.loads(seaweedfs_s3_config_write(tmp_path, credentials).read_text())

    assert [i["name"] for i in config["identities"]] == ["yixin"]
    assert config["identities"][0]["credentials"] == [
        {"accessKey": credentials.s3_access_key, "secretKey": credentials.s3_secret_key}
    ]


@pytest.mark.parametrize("value", [None, True, False, 0, -16, 127, -17, 128, -(2**31), 2**40, 1.5, "", "医" * 20,
                                   "x" * 300, b"\x00\x01", [1, [2, "a"]], {"k": {"n": None}}, list(range(20))])
def test_packstream_round_trips(value):
    assert packstream.unpack(packstream.pack(value)) == value


@pytest.mark.parametrize("data", [b"\xC7", b"\x85abc", b"\x91", b"\xA1\x01\x01", b"\x01\x02", b"\xD0\x02\xFF\xFE"])
def test_packstream_refuses_malformed_bytes(data):
    with pytest.raises(packstream.PackStreamError):
        packstream.unpack(data)


def test_packstream_refuses_deep_nesting():
    with pytest.raises(packstream.PackStreamError, match="nested"):
        packstream.unpack(b"\x91" * 100 + b"\x90")


def test_framer_joins_chunks_split_across_reads_and_skips_noops():
    from portal.embedded.bolt_gate import Framer

    stream = b"\x00\x00" + b"\x00\x02\xB0\x02" + b"\x00\x01\x0F\x00\x00" + packstream.chunk(b"\xB0\x0F")
    framer = Framer(limit=100)
    messages = []
    for i in range(len(stream)):  # one byte per read
        messages += framer.feed(stream[i:i + 1])

    assert messages == [b"\xB0\x02\x0F", b"\xB0\x0F"]


def test_framer_drops_an_oversized_message_and_reads_the_next():
    from portal.embedded.bolt_gate import Framer, TooLarge

    framer = Framer(limit=10)

    assert framer.feed(packstream.chunk(b"x" * 30) + packstream.chunk(b"\xB0\x0F")) == [TooLarge(30), b"\xB0\x0F"]


def test_parameter_size_bounds_falkordbs_rendering():
    from portal.embedded.bolt_gate import parameters_size

    # CYPHER text='a\'b' rows=[{k: 1}] : every character counted, escapes included.
    assert parameters_size({"text": "a'b", "rows": [{"k": 1}]}) >= len("CYPHER text='a\\'b' rows=[{k: 1}] ")
