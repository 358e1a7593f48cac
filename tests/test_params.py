"""params.yaml: loaded once, every key typed and ranged, typos and duplicates refused in one line."""

import pytest

from prunetune.config import PrunetuneError, load_params


def test_a_key_written_twice_is_refused_naming_file_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  seed: 1\n  val_fraction: 0.1\n  seed: 3\nmodel:\n  name: tiny\n")
    with pytest.raises(PrunetuneError) as caught:
        load_params(path)
    assert str(caught.value) == (
        f"{path}:4: key 'seed' is written twice (first on line 2); YAML would silently keep the last: keep one"
    )
    path.write_text("data: {seed: 1}\ndata: {seed: 2}\n")
    with pytest.raises(PrunetuneError, match=r"params\.yaml:2: key 'data' is written twice \(first on line 1\)"):
        load_params(path)
