from __future__ import annotations

import json

from click.testing import CliRunner

from drivers.decode_cli import decode

from .test_mrz import SPECIMEN

QR = "001099012345|123456789|Nguyễn Thị Ngọc Hường|01021990|Nữ|Phường Hoàn Kiếm, Hà Nội|15082021\r"


def test_decode_qr_prints_one_json_object() -> None:
    result = CliRunner().invoke(decode, ["qr", QR])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    record = json.loads(result.stdout)
    assert record["id_number"] == "001099012345"
    assert record["old_id_number"] == "123456789"
    assert record["full_name"] == "Nguyễn Thị Ngọc Hường"
    assert record["date_of_birth"] == "1990-02-01"
    assert record["issue_date"] == "2021-08-15"
    assert record["expiry_date"] is None
    assert record["sex"] == "F"
    assert record["address"] == "Phường Hoàn Kiếm, Hà Nội"
    assert "Nguyễn" in result.stdout  # not ASCII-escaped


def test_decode_mrz_prints_one_json_object() -> None:
    result = CliRunner().invoke(decode, ["mrz", *SPECIMEN])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["document_number"] == "D23145890"
    assert record["nationality"] == "UTO"
    assert record["date_of_birth"] == "1974-08-12"
    assert record["expiry_date"] == "2012-04-15"
    assert record["full_name"] == "ERIKSSON ANNA MARIA"


def test_decode_qr_error_goes_to_stderr_with_exit_2() -> None:
    result = CliRunner().invoke(decode, ["qr", "001099012345|x|y"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: qr: expected at least 7")


def test_decode_mrz_bad_check_digit_names_the_field() -> None:
    bad = SPECIMEN[1][:6] + "3" + SPECIMEN[1][7:]
    result = CliRunner().invoke(decode, ["mrz", SPECIMEN[0], bad, SPECIMEN[2]])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "date_of_birth: check digit" in result.stderr


def test_every_command_has_help() -> None:
    for name in ("qr", "mrz"):
        result = CliRunner().invoke(decode, [name, "--help"])
        assert result.exit_code == 0
        assert "Decode" in result.stdout


def test_aps_agent_carries_the_decode_group() -> None:
    from edge_agent.cli import main

    ok = CliRunner().invoke(main, ["decode", "qr", QR])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["full_name"] == "Nguyễn Thị Ngọc Hường"
    bad = CliRunner().invoke(main, ["decode", "mrz", "x", "y", "z"])
    assert bad.exit_code == 2
    assert bad.stdout == ""
    assert bad.stderr.startswith("error: ")
