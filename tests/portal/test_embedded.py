"""The embedded services' command lines: port checks that would otherwise fail silently."""

from __future__ import annotations

import pytest

from portal import embedded


def test_bolt_port_above_falkordb_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match="32767"):
        embedded.redis_command(port=6390, bolt_port=37688, data_dir=tmp_path)


def test_bolt_port_in_range_is_passed_to_falkordb(tmp_path):
    argv = embedded.redis_command(port=6390, bolt_port=7688, data_dir=tmp_path)

    assert argv[argv.index("BOLT_PORT") + 1] == "7688"


def test_seaweedfs_ports_derive_from_the_s3_port_and_never_use_fixed_extra_ports(tmp_path):
    argv = embedded.seaweedfs_command(s3_port=18333, data_dir=tmp_path)

    assert "-s3.port=18333" in argv
    # 8181 and 9101 are SeaweedFS's defaults for its Iceberg catalog and Lance namespace; two
    # instances would collide on them.
    assert "-s3.port.iceberg=0" in argv and "-s3.port.lance=0" in argv
