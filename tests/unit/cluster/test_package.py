"""A working_dir packaged by content: the same files, the same package; old ones removed."""

import os
import zipfile

from headway.cluster.package import package_working_dir


def test_package_is_content_addressed(tmp_path):
    src = tmp_path / "src"
    (src / "__pycache__").mkdir(parents=True)
    (src / "m.py").write_text("x = 1\n")
    (src / "__pycache__" / "m.pyc").write_bytes(b"junk")
    out = tmp_path / "out"
    uri1 = package_working_dir(str(src), out, [])
    assert uri1 == package_working_dir(str(src), out, [])
    names = zipfile.ZipFile(uri1.removeprefix("file://")).namelist()
    assert names == ["working_dir/m.py"]
    (src / "m.py").write_text("x = 2\n")
    uri2 = package_working_dir(str(src), out, [])
    assert uri2 != uri1
    assert sorted(os.listdir(out)) == [os.path.basename(uri2)]  # old package removed
