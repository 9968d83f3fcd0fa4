"""Each function's own zip (package.individually): it holds what its code uses, for Lambda's platform.

The zips are the real `serverless package` output in artifacts/ (serverless-python-requirements
installs requirements.txt with Lambda-platform wheels, plugins/stream-consumers/packages.js
prunes each zip to its function's closure). Nothing here imports or runs the zipped code: the
checks read file names, dist-info metadata, ELF headers and the code's import statements, so
they hold on any machine whatever the functions' architecture.
"""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest
import yaml

from consumers.registry import CONSUMERS

from .conftest import ROOT, function_resources
from .zip_imports import module_path, provides_top_level, scan

# What the API's web stack and the CLIs bring: no stream function may carry any of it.
WEB_AND_CLI = ("flask", "werkzeug", "jinja2", "markupsafe", "itsdangerous", "blinker", "click", "pygments",
               "rich", "serverless_wsgi", "wsgi_handler")
ELF_MACHINE = {"arm64": 0xB7, "x86_64": 0x3E}  # e_machine: EM_AARCH64, EM_X86_64
WHEEL_PLATFORM = {"arm64": "aarch64", "x86_64": "x86_64"}
OWN_TOPS = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
# Imports of plugin-supplied code that only run for other setups: serverless-wsgi's handler
# imports django for `sls wsgi manage` on Django apps (ours is Flask).
NOT_USED_HERE = {"django"}


def serverless_config() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)  # ${...} and !Ref stay opaque
    return yaml.load((ROOT / "serverless.yml").read_text(), Loader=Loader)


def runtime_provided() -> set[str]:
    """Top-level modules the Lambda Python runtime provides (serverless.yml noDeploy)."""
    return set(serverless_config()["custom"]["pythonRequirements"]["noDeploy"])


def entry_modules(name: str, props: dict, names: set[str], read) -> list[str]:
    """The modules Lambda loads for the function, plus what it loads by name at run time."""
    module = props["Handler"].rsplit(".", 1)[0].replace("/", ".")
    entries = [module]
    if module == "wsgi_handler":  # serverless-wsgi loads the app named in .serverless-wsgi
        app = json.loads(read(".serverless-wsgi"))["app"].rsplit(".", 1)[0]
        entries.append(app.replace("/", "."))
    if name in CONSUMERS:  # consumer_handler(__name__) imports the consumer's module by name
        entries.append(CONSUMERS[name].module)
    if name == "reprocess":  # the drain runs any consumer's handle_record (Consumer.load())
        entries += [c.module for c in CONSUMERS.values()]
    return entries


def test_every_function_has_its_own_zip_holding_its_handler(template, function_zips, zip_contents):
    functions = function_resources(template)
    assert set(function_zips) == {*CONSUMERS, "reprocess", "api"}
    assert len({p.name for p in function_zips.values()}) == len(functions)  # one zip each
    for name, props in functions.items():
        handler_file = props["Handler"].rsplit(".", 1)[0] + ".py"
        assert handler_file in zip_contents[name], (name, handler_file)


@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_stream_functions_ship_no_web_or_cli_stack(zip_contents, consumer):
    names = zip_contents[consumer]
    shipped = [top for top in WEB_AND_CLI if provides_top_level(names, top)]
    assert shipped == [], f"{consumer}'s zip carries {shipped}"
    assert not [n for n in names if n.startswith(("opsapi/", "reprocess/"))]
    # ...while the API still has its stack (the check above is not vacuous)
    assert all(provides_top_level(zip_contents["api"], top) for top in ("flask", "werkzeug", "serverless_wsgi"))


def test_each_function_carries_only_its_own_clients(zip_contents):
    clients = {"search-indexer": "opensearchpy", "crm-sync": "httpx"}
    for consumer, client in clients.items():
        for other, holder in zip_contents.items():
            has = provides_top_level(holder, client)
            assert has == (other in (consumer, "reprocess")), (other, client)


def test_no_function_ships_slack_sdk(zip_contents):
    """slack-notifier posts with a stdlib webhook client (consumers/slack_webhook.py): no zip
    carries slack_sdk, not even the notifier's or the reprocess function's."""
    assert {"slack-notifier", "reprocess"} <= set(zip_contents)
    assert [name for name, names in zip_contents.items() if provides_top_level(names, "slack_sdk")] == []


@pytest.mark.parametrize("function", [*CONSUMERS, "reprocess", "api"])
def test_each_zip_holds_everything_its_code_imports(template, function_zips, zip_contents, function):
    props = function_resources(template)[function]
    names = zip_contents[function]
    with zipfile.ZipFile(function_zips[function]) as z:
        def read(path: str) -> str:
            return z.read(path).decode()

        result = scan(names, read, entry_modules(function, props, names, read), OWN_TOPS)
    assert not result.missing_own, f"{function} imports our modules its zip lacks: {sorted(result.missing_own)}"
    provided = runtime_provided()
    missing = {top: by for top, by in result.third_party.items()
               if top not in provided | NOT_USED_HERE and not provides_top_level(names, top)}
    assert not missing, f"{function}'s zip lacks {missing} (name: imported by)"
    assert len(result.own_modules) >= 5  # the scan followed the code, not just the handler file


def test_import_scan_reports_what_a_zip_lacks():
    files = {
        "handlers/__init__.py": "",
        "handlers/x.py": "from streamkit import go\nimport lib_a\n",
        "streamkit/__init__.py": "from .loop import go\n",
        "streamkit/loop.py": ("def go():\n    import lib_b  # lazy, still needed\n"
                              "try:\n    import optional_c\nexcept ImportError:\n    pass\n"
                              "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import only_types\n"
                              "from reprocess import worker\n"),
        "lib_a/__init__.py": "",
    }
    result = scan(set(files), files.__getitem__, ["handlers.x"], {"handlers", "streamkit", "reprocess"})
    assert set(result.third_party) == {"lib_a", "lib_b"}
    assert result.missing_own == {"reprocess"}
    assert module_path(set(files), "streamkit.loop") in result.own_modules


def test_compiled_code_is_for_the_function_architecture(template, function_zips):
    arches = {props.get("Architectures", ["x86_64"])[0] for props in function_resources(template).values()}
    assert arches == {"arm64"}  # chosen explicitly in serverless.yml
    arch = arches.pop()
    checked = 0
    for name, path in function_zips.items():
        with zipfile.ZipFile(path) as z:
            for entry in z.namelist():
                if entry.endswith(".so") or ".so." in entry.rsplit("/", 1)[-1]:
                    header = z.read(entry)[:20]
                    assert header[:4] == b"\x7fELF", (name, entry)
                    machine = int.from_bytes(header[18:20], "little")
                    assert machine == ELF_MACHINE[arch], f"{name}: {entry} is for e_machine {machine:#x}, not {arch}"
                    checked += 1
                elif entry.endswith(".dist-info/WHEEL"):
                    for line in z.read(entry).decode().splitlines():
                        if line.startswith("Tag:"):
                            python, abi, platform = line.split(":", 1)[1].strip().split("-")
                            assert platform == "any" or (
                                platform.startswith("manylinux") and platform.endswith(WHEEL_PLATFORM[arch])
                                and (python == "cp312" or abi == "abi3")), f"{name}: {entry}: {line}"
    assert checked, "no compiled extension found: the check would pass vacuously"


def test_dist_info_shipped_only_for_kept_distributions(zip_contents):
    for name, names in zip_contents.items():
        tops = {n.split("/", 1)[0] for n in names}
        dist_infos = {t.rsplit("-", 1)[0].lower() for t in tops if t.endswith(".dist-info")}
        if name in CONSUMERS:
            assert "flask" not in dist_infos and "click" not in dist_infos, name
        assert "requirements.txt" not in names and ".completed_requirements" not in names, name


# -- the closure helper itself (deploy/requirements_closure.py), on a made-up install ------------

def _dist(root, name, version, requires=(), files=()):
    info = root / f"{name}-{version}.dist-info"
    info.mkdir()
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *[f"Requires-Dist: {r}" for r in requires]]
    (info / "METADATA").write_text("\n".join(meta) + "\n")
    record = [f"{f},," for f in files] + [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")


def run_closure(root, functions, architecture="arm64"):
    spec = {"python": "3.12", "architecture": architecture, "provided": ["boto3"], "functions": functions}
    return subprocess.run([sys.executable, str(ROOT / "deploy" / "requirements_closure.py"), str(root)],
                          input=json.dumps(spec), capture_output=True, text=True)


def test_closure_evaluates_markers_for_lambda_not_for_the_packaging_machine(tmp_path):
    _dist(tmp_path, "app", "1", requires=[
        "core>=1", 'winonly; sys_platform == "win32"', 'armonly; platform_machine == "aarch64"',
        'old; python_version < "3.11"', 'cli; extra == "cli"', "boto3"], files=["app/__init__.py"])
    for n in ("core", "winonly", "armonly", "old", "cli"):
        _dist(tmp_path, n, "1", files=[f"{n}/__init__.py", f"../../bin/{n}"])
    proc = run_closure(tmp_path, {"fn": ["app"], "fn-cli": ["app[cli]"]})
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["functions"]
    assert plan["fn"]["keep"] == ["app", "armonly", "core"]
    assert "cli/__init__.py" in plan["fn"]["drop"] and "bin/cli" in plan["fn"]["drop"]
    assert "winonly/__init__.py" in plan["fn"]["drop"] and "core/__init__.py" not in plan["fn"]["drop"]
    assert plan["fn-cli"]["keep"] == ["app", "armonly", "cli", "core"]
    x86 = json.loads(run_closure(tmp_path, {"fn": ["app"]}, architecture="x86_64").stdout)["functions"]
    assert x86["fn"]["keep"] == ["app", "core"]


def test_closure_names_the_fix_for_an_undeclared_or_unknown_requirement(tmp_path):
    _dist(tmp_path, "app", "1")
    proc = run_closure(tmp_path, {"fn": ["apq"]})
    assert proc.returncode == 2 and "'apq'" in proc.stderr and "requirements.txt" in proc.stderr
    proc = run_closure(tmp_path, {"fn": []})
    assert proc.returncode == 2 and "functions.fn.requirements" in proc.stderr


def test_packaging_leaves_no_generated_files_in_the_working_tree():
    # serverless-wsgi writes these for the package and removes them after (see keepWsgiFilesAtRoot)
    for name in ("wsgi_handler.py", "serverless_wsgi.py", ".serverless-wsgi"):
        for folder in (ROOT, ROOT / "handlers"):
            assert not (folder / name).exists(), folder / name
