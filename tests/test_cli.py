import pytest

from alignrepro import cli


def test_help_lists_every_step(capsys):
    cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(step in out for step in cli.all_steps())


@pytest.mark.parametrize("step", list(cli.all_steps()))
def test_every_step_has_help(step, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([step, "--help"])
    assert e.value.code == 0 and "usage:" in capsys.readouterr().out


def test_unknown_step_is_an_error_naming_it():
    with pytest.raises(SystemExit, match="unknown step 'trian'"):
        cli.main(["trian"])
