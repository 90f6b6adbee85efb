"""An application's packages: what a service YAML may declare, how the files it names are
read (on the user's machine), and what Serve is given instead of a pip install."""

from __future__ import annotations

import pytest

from headway.cluster import deps, serve
from headway.model import requirements
from headway.model.spec import SpecError
from headway.model.spec_load import load_spec_text, parse_spec


@pytest.mark.parametrize(
    "good",
    ["scikit-learn>=1.5", "pandas[parquet]==2.2.3", "numpy; python_version>'3.8'", "vaderSentiment", "  requests  "],
)
def test_index_requirements_are_taken(good):
    assert requirements.check(good) == good.strip()


@pytest.mark.parametrize(
    "bad,why",
    [
        ("pkg @ https://evil.example/p.whl", "a URL or path"),
        ("pkg @ file:///etc/passwd", "a URL or path"),
        ("-r /etc/shadow", "pip options"),
        ("--extra-index-url http://evil/", "pip options"),
        ("-e git+https://x/y", "pip options"),
        ("not a requirement!!", "not a package requirement"),
        ("", "not a package requirement"),
        ("x" * 400, "not a package requirement"),
        ("numpy\n--index-url=x", "not a package requirement"),
    ],
)
def test_anything_that_would_make_the_control_host_fetch_or_read_a_path_is_refused(bad, why):
    with pytest.raises(ValueError, match=why):
        requirements.check(bad)


def test_a_requirements_file_is_read_line_by_line():
    text = "# comment\nscikit-learn>=1.5  # the model\n\nvaderSentiment\n   # indented comment\n"
    assert requirements.parse_file(text) == ["scikit-learn>=1.5", "vaderSentiment"]


def test_runtime_env_pip_in_every_form_ray_takes():
    assert requirements.pip_packages({"pip": ["a", "b==1"]}) == ["a", "b==1"]
    assert requirements.pip_packages({"pip": {"packages": ["a"], "pip_check": False}}) == ["a"]
    assert requirements.pip_packages({"uv": ["c"]}) == ["c"]
    assert requirements.pip_packages({"env_vars": {"A": "1"}}) == []
    with pytest.raises(ValueError, match="unknown field"):
        requirements.check_runtime_env({"pip": {"packages": ["a"], "index": "x"}})
    with pytest.raises(ValueError, match="is a file on your machine"):
        requirements.check_runtime_env({"pip": "requirements.txt"})
    with pytest.raises(ValueError, match="runtime_env.image_uri"):
        requirements.check_runtime_env({"image_uri": "x"})


def test_service_and_application_requirements_are_merged_once():
    spec = parse_spec(
        {
            "name": "s",
            "requirements": ["a", "b"],
            "applications": [
                {"name": "one", "import_path": "m:a", "runtime_env": {"pip": ["b", "c"]}},
                {"name": "two", "import_path": "m:b", "route_prefix": "/two"},
            ],
        },
        "t",
    )
    one, two = spec.applications
    assert spec.app_requirements(one) == ["a", "b", "c"]
    assert spec.app_requirements(two) == ["a", "b"]


YAML = """
name: s
requirements: reqs.txt
applications:
  - name: one
    import_path: m:a
    runtime_env:
      pip: app-reqs.txt
"""


def test_the_cli_reads_requirement_files_relative_to_the_yaml(tmp_path):
    (tmp_path / "reqs.txt").write_text("vaderSentiment\n")
    (tmp_path / "app-reqs.txt").write_text("# pinned\nscikit-learn==1.9.1\n")
    spec = load_spec_text(YAML, "t.yaml", tmp_path)
    assert spec.requirements == ["vaderSentiment"]
    assert spec.app_requirements(spec.applications[0]) == ["vaderSentiment", "scikit-learn==1.9.1"]


def test_a_missing_requirements_file_says_which_and_where(tmp_path):
    with pytest.raises(SpecError, match=r"requirements: cannot read .*reqs.txt"):
        load_spec_text(YAML, "t.yaml", tmp_path)


def test_the_api_never_opens_a_requirements_file_a_yaml_names(tmp_path):
    (tmp_path / "reqs.txt").write_text("vaderSentiment\n")
    with pytest.raises(SpecError, match="is a file on your machine"):
        load_spec_text(YAML, "t.yaml", None)


def test_serve_gets_the_shipped_package_not_a_pip_install():
    spec = parse_spec(
        {
            "name": "s",
            "applications": [
                {
                    "name": "one",
                    "import_path": "m:a",
                    "runtime_env": {"pip": ["vaderSentiment"], "py_modules": ["x.zip"]},
                },
                {"name": "two", "import_path": "m:b", "route_prefix": "/two", "runtime_env": {"env_vars": {"A": "1"}}},
            ],
        },
        "t",
    )
    cfg = serve.serve_config(spec, None, 8000, {"one": "file:///pkg/deps-1.zip"})
    one, two = cfg["applications"]
    assert "pip" not in one["runtime_env"]
    assert one["runtime_env"]["py_modules"] == ["x.zip", "file:///pkg/deps-1.zip"]
    assert "py_modules" not in two["runtime_env"]


def test_a_package_is_named_by_its_list_and_rays_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))  # a package's path is in the state dir
    env = deps.ray_environment()
    assert {"ray", "numpy", "fastapi", "python"} <= set(env)
    assert requirements.digest(["a", "b"], env) == requirements.digest(["b", "a"], env)
    assert requirements.digest(["a"], env) != requirements.digest(["a"], {**env, "numpy": "0"})
    spec = parse_spec({"name": "s", "requirements": ["a"], "applications": [{"import_path": "m:a"}]}, "t")
    assert deps.uris("s", spec) == {"default": f"file://{deps.package_path('s', ['a'])}"}
    assert deps.uris("s", parse_spec({"name": "s", "applications": [{"import_path": "m:a"}]}, "t")) == {}
