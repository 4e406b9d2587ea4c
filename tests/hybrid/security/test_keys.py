"""The key file: only digests are written, names are unique, bad files say what to fix, a store reloads."""

from __future__ import annotations

import stat

import pytest

from hybrid.cli import main
from hybrid.protocol import Priority
from hybrid.security.keys import (
    KeyLimits,
    KeyStore,
    add_key,
    bearer_key,
    key_digest,
    load_key_file,
    revoke_key,
)


def test_a_key_is_returned_once_and_only_its_digest_is_written(tmp_path):
    path = tmp_path / "keys.yaml"
    key = add_key(path, "alice", ("realtime", "batch"), KeyLimits(requests_per_s=5, tokens_per_min=1000, streams=2))
    text = path.read_text()
    assert key.startswith("hyb_") and len(key) > 40
    assert key not in text and key[4:] not in text and key_digest(key) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = load_key_file(path).find("alice")
    assert entry.priorities == ("realtime", "batch") and entry.limits.streams == 2 and not entry.admin
    assert entry.allows(Priority.REALTIME) and not entry.allows(Priority.INTERACTIVE)
    assert add_key(path, "bob") != key


def test_names_are_unique_and_revoke_names_what_exists(tmp_path):
    path = tmp_path / "keys.yaml"
    add_key(path, "alice")
    with pytest.raises(ValueError, match="already exists"):
        add_key(path, "alice")
    with pytest.raises(ValueError, match=r"no key named 'bob'.*alice"):
        revoke_key(path, "bob")
    revoke_key(path, "alice")
    assert load_key_file(path).keys == []


@pytest.mark.parametrize(
    "text, says",
    [
        ("keys: [oops", "not valid YAML or JSON"),
        ('{"keys": [{"name": "a", "sha256": "abc"}]}', "keys.0.sha256"),
        ("keys:\n- {name: a, sha256: " + "a" * 64 + ", priorities: [urgent]}", "unknown priority 'urgent'"),
        ("keys:\n- {name: a, sha256: " + "a" * 64 + "}\n- {name: a, sha256: " + "b" * 64 + "}", "appears twice"),
        ("keys:\n- {name: a, sha256: " + "a" * 64 + ", limits: {rps: 3}}", "keys.0.limits.rps"),
    ],
)
def test_a_bad_key_file_says_where_and_what(tmp_path, text, says):
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=says) as error:
        load_key_file(path)
    assert str(path) in str(error.value)


def test_a_missing_key_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ValueError, match="hybrid keys add"):
        KeyStore(tmp_path / "none.yaml")


@pytest.mark.parametrize(
    "value, key",
    [
        ("Bearer hyb_abc", "hyb_abc"),
        ("bearer   hyb_abc ", "hyb_abc"),
        ("Basic hyb_abc", None),
        ("Bearer", None),
        ("hyb_abc", None),
        ("", None),
        (None, None),
    ],
)
def test_the_bearer_scheme_is_read_and_nothing_else(value, key):
    assert bearer_key(value) == key


def test_a_store_sees_keys_added_and_revoked_and_keeps_the_last_good_file(tmp_path):
    path = tmp_path / "keys.yaml"
    alice = add_key(path, "alice")
    store = KeyStore(path)
    assert store.identify(alice).name == "alice" and store.identify(alice + "x") is None
    assert not store.refresh()  # unchanged: not read again
    bob = add_key(path, "bob")
    assert store.identify(bob) is None and store.refresh() and store.identify(bob).name == "bob"
    revoke_key(path, "alice")
    assert store.refresh() and store.identify(alice) is None
    path.write_text("keys: [")
    assert not store.refresh() and store.identify(bob).name == "bob"
    path.unlink()
    assert not store.refresh() and store.identify(bob).name == "bob"


def test_a_json_key_file_is_read_and_written_as_json(tmp_path):
    path = tmp_path / "keys.json"
    key = add_key(path, "alice", limits=KeyLimits(streams=3))
    assert path.read_text().lstrip().startswith("{") and key not in path.read_text()
    assert KeyStore(path).identify(key).limits.streams == 3


def test_the_keys_command_prints_the_key_once_on_stdout(tmp_path, capsys):
    path = tmp_path / "keys.yaml"
    assert (
        main(["keys", "add", "alice", "--priorities", "realtime,interactive", "--rps", "2", "--keys", str(path)]) == 0
    )
    out, err = capsys.readouterr()
    key = out.strip()
    assert KeyStore(path).identify(key).limits.requests_per_s == 2 and "shown once" in err
    assert main(["keys", "list", "--json", "--keys", str(path)]) == 0
    listed = capsys.readouterr().out
    assert '"alice"' in listed and key not in listed and key_digest(key) not in listed
    assert main(["keys", "revoke", "alice", "--keys", str(path)]) == 0
    assert main(["keys", "revoke", "alice", "--keys", str(path)]) == 2
    with pytest.raises(SystemExit):
        main(["keys", "add", "bob", "--priorities", "urgent", "--keys", str(path)])
