import pytest

from arenahub import jsonc


def test_comments_and_trailing_commas_are_accepted():
    text = '{\n  // a comment\n  "a": [1, 2,], /* block\n comment */ "b": "x // not a comment",\n}\n'
    assert jsonc.loads(text) == {"a": [1, 2], "b": "x // not a comment"}


def test_strings_with_escapes_and_slashes_survive():
    assert jsonc.loads(r'{"u": "http://h/p", "q": "say \"hi\", /* no */"}') == {
        "u": "http://h/p", "q": 'say "hi", /* no */'}


def test_error_names_the_file_and_real_line():
    text = '{\n  // comment\n  "a": 1\n  "b": 2\n}'
    with pytest.raises(jsonc.ConfigError) as info:
        jsonc.loads(text, "config.jsonc")
    assert info.value.line == 4
    assert str(info.value).startswith("config.jsonc:4:")


def test_missing_file(tmp_path):
    with pytest.raises(jsonc.ConfigError, match="file not found"):
        jsonc.load(tmp_path / "nope.jsonc")


def test_line_of_finds_the_key():
    assert jsonc.line_of('{\n // "x": no\n "x": 1}', "x") == 3
