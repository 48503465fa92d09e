# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/awx_job_templates.yml against a small in-memory stand-in for AWX's REST API.

No AWX can run here. The stand-in answers the calls awx.awx's modules make (token login, lookups by
name, create, patch, survey_spec, credential associations, project updates) the way AWX 24 does,
and stores what it is sent, so these tests prove what the playbook asks AWX for and that a second
run asks for nothing. They do not prove that a real AWX accepts every field (docs/awx.md says so).
"""

import base64
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

from helpers import REPO, run_playbook

PLAYBOOK = os.path.join(REPO, "playbooks", "awx_job_templates.yml")
WRAPPER = os.path.join(REPO, "playbooks", "awx_site.yml")
USER, PASSWORD = "admin", "s3cret-awx-password"
SETTINGS = {
    "awx_project_scm_url": "https://git.example.invalid/passthrough-gpu.git",
    "awx_inventory": "GPU hosts",
    "awx_machine_credential": "hosts ssh",
    "awx_vmware_credential": "vCenter",
}
ROLES = {"kvm_host": "kvm_hosts", "proxmox_host": "proxmox_hosts", "esxi_host": "esxi_hosts"}


class FakeAWX:
    """AWX's /api/v2/ as far as the playbook uses it: objects in dicts, every request logged."""

    def __init__(self):
        self.objects = {}  # endpoint -> {id: object}
        self.surveys = {}  # job template id -> survey spec
        self.links = {}  # (endpoint, id, association) -> [ids]
        self.requests = []  # (method, path)
        self.next_id = 100
        self.add("organizations", name="Default")
        self.add("inventories", name="GPU hosts", organization=1)
        self.add("credentials", name="hosts ssh", credential_type=1)
        self.add("credentials", name="vCenter", credential_type=2)

    def add(self, endpoint, **fields):
        self.next_id += 1
        oid = self.next_id
        url = "/api/v2/%s/%d/" % (endpoint, oid)
        obj = dict(fields, id=oid, url=url, type=endpoint.rstrip("s"), summary_fields={},
                   related={"survey_spec": url + "survey_spec/", "credentials": url + "credentials/",
                            "update": url + "update/"})
        if endpoint == "projects":
            # AWX starts a sync of a new project at once; the module waits for it.
            update = self.add("project_updates", status="successful", finished="2026-01-01T00:00:00Z",
                              failed=False, scm_revision="0" * 40)
            obj["summary_fields"] = {"current_update": {"id": update["id"]}}
            obj["scm_revision"] = "0" * 40
        self.objects.setdefault(endpoint, {})[oid] = obj
        return obj

    def writes(self):
        """Requests that would change AWX (a login token is not a change of AWX's objects)."""
        return [r for r in self.requests if r[0] != "GET" and "/tokens/" not in r[1]]

    def find(self, endpoint, **fields):
        return [o for o in self.objects.get(endpoint, {}).values()
                if all(str(o.get(k)) == str(v) for k, v in fields.items())]

    def handle(self, method, path, query, body):
        """Returns (status, json)."""
        self.requests.append((method, path))
        parts = [p for p in path.split("/") if p][2:]  # after api/v2
        if parts == ["tokens"] and method == "POST":
            return 201, {"id": 1, "token": "t0ken"}
        if parts[:1] == ["tokens"] and method == "DELETE":
            return 204, None
        endpoint = parts[0]
        if len(parts) == 1:
            if method == "GET":
                filters = {k: v for k, v in query.items() if not k.startswith(("or__", "page"))}
                either = [v for k, v in query.items() if k.startswith("or__")]
                found = [o for o in self.find(endpoint, **filters)
                         if not either or str(o["id"]) in either or o.get("name") in either]
                return 200, {"count": len(found), "next": None, "previous": None, "results": found}
            if method == "POST":
                if self.find(endpoint, name=body.get("name"), organization=body.get("organization")):
                    return 400, {"__all__": ["already exists"]}
                return 201, self.add(endpoint, **body)
        oid = int(parts[1])
        obj = self.objects.get(endpoint, {}).get(oid)
        if obj is None:
            return 404, {"detail": "Not found."}
        if len(parts) == 2:
            if method == "PATCH":
                obj.update(body)
            return 200, obj
        sub = parts[2]
        if sub == "survey_spec":
            if method == "POST":
                self.surveys[oid] = body
            return 200, self.surveys.get(oid, {})
        linked = self.links.setdefault((endpoint, oid, sub), [])
        if method == "POST":
            if body.get("disassociate"):
                linked.remove(body["id"])
            else:
                linked.append(body["id"])
            return 204, None
        results = [self.objects["credentials"][i] for i in linked]
        return 200, {"count": len(results), "next": None, "results": results}


@pytest.fixture
def awx():
    fake = FakeAWX()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            split = urlsplit(self.path)
            if "/tokens/" in split.path:  # login and logout: basic auth
                expected = "Basic " + base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
                if self.headers.get("Authorization") != expected:
                    return self._reply(401, {"detail": "Invalid username/password."})
            elif self.headers.get("Authorization") != "Bearer t0ken":
                return self._reply(401, {"detail": "Authentication credentials were not provided."})
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            with lock:
                status, payload = fake.handle(self.command, split.path, dict(parse_qsl(split.query)), body)
            return self._reply(status, payload)

        def _reply(self, status, payload):
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-API-Product-Name", "AWX")
            self.send_header("X-API-Product-Version", "24.6.1")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, *args):  # keep pytest's output for failures
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.env = {"CONTROLLER_HOST": "http://127.0.0.1:%d" % server.server_address[1],
                "CONTROLLER_USERNAME": USER, "CONTROLLER_PASSWORD": PASSWORD}
    yield fake
    server.shutdown()
    server.server_close()


def run(awx, *extra, settings=None):
    args = []
    for key, value in (SETTINGS if settings is None else settings).items():
        args += ["-e", json.dumps({key: value})]
    # The controller's own Python on localhost, as an implicit localhost would have.
    args += ["-e", "ansible_python_interpreter=" + sys.executable]
    proc = run_playbook(PLAYBOOK, inventory="localhost,", env=awx.env, extra_args=args + list(extra), timeout=300)
    output = proc.stdout + proc.stderr
    recap = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    return proc.returncode, (int(recap.group(2)) if recap else None), output


def test_templates_created_then_nothing_to_do(awx):
    rc, changed, output = run(awx)
    assert rc == 0, output[-4000:]
    # The project, then the three job templates (one looped task).
    assert changed == 2 and output.count("changed: [localhost]") == 4, output[-4000:]
    assert PASSWORD not in output and "WARNING" not in output
    project, = awx.find("projects", name="passthrough.gpu")
    assert project["scm_url"] == SETTINGS["awx_project_scm_url"] and project["scm_type"] == "git"
    templates = {t["limit"]: t for t in awx.find("job_templates")}
    assert sorted(templates) == sorted(ROLES.values())
    creds = {c["name"]: c["id"] for c in awx.find("credentials")}
    for group, template in templates.items():
        assert template["playbook"] == "playbooks/awx_site.yml"
        assert template["project"] == project["id"]
        assert template["inventory"] == awx.find("inventories", name="GPU hosts")[0]["id"]
        assert template["survey_enabled"] is True
        linked = awx.links[("job_templates", template["id"], "credentials")]
        assert linked == [creds["vCenter" if group == "esxi_hosts" else "hosts ssh"]]
        spec = awx.surveys[template["id"]]["spec"]
        reboot, = [q for q in spec if q["variable"].endswith("_reboot_ok")]
        assert reboot["default"] == "no" and reboot["required"] is True

    # Run again: every object is already right, nothing is written.
    before = len(awx.writes())
    rc, changed, output = run(awx)
    assert (rc, changed) == (0, 0), output[-4000:]
    assert awx.writes()[before:] == []

    # Check mode on an up-to-date AWX: nothing to do and nothing written.
    rc, changed, output = run(awx, "--check")
    assert (rc, changed) == (0, 0), output[-4000:]
    assert awx.writes()[before:] == []


def test_changed_setting_is_reported_in_check_mode_then_applied(awx):
    assert run(awx)[0] == 0
    settings = dict(SETTINGS, awx_project_scm_branch="release-1")
    before = len(awx.writes())
    rc, changed, output = run(awx, "--check", settings=settings)
    assert (rc, changed) == (0, 1), output[-4000:]
    assert awx.writes()[before:] == []
    rc, changed, output = run(awx, settings=settings)
    assert (rc, changed) == (0, 1), output[-4000:]
    assert awx.find("projects", name="passthrough.gpu")[0]["scm_branch"] == "release-1"
    rc, changed, output = run(awx, settings=settings)
    assert (rc, changed) == (0, 0), output[-4000:]


def test_inventory_from_the_project(awx):
    settings = dict(SETTINGS, awx_inventory="fleet", awx_inventory_source_path="inventory/fleet.yml")
    rc, changed, output = run(awx, settings=settings)
    assert rc == 0, output[-4000:]
    inventory, = awx.find("inventories", name="fleet")
    source, = awx.find("inventory_sources")
    assert (source["inventory"], source["source"], source["source_path"]) == (inventory["id"], "scm",
                                                                              "inventory/fleet.yml")
    assert all(t["inventory"] == inventory["id"] for t in awx.find("job_templates"))
    assert run(awx, settings=settings)[:2] == (0, 0)


def test_missing_settings_refused_before_any_change(awx):
    rc, _changed, output = run(awx, settings={"awx_project_scm_url": ""})
    assert rc != 0 and "Set awx_project_scm_url" in output
    assert awx.requests == []


def test_wrong_password_is_a_clear_error(awx):
    awx.env["CONTROLLER_PASSWORD"] = "wrong"
    rc, _changed, output = run(awx)
    assert rc != 0 and "Failed to get token" in output
    assert awx.writes() == []


def survey_questions():
    with open(PLAYBOOK) as handle:
        play = yaml.safe_load(handle)[0]
    return [(t["role"], q) for t in play["vars"]["awx_templates"] for q in t["survey"]]


@pytest.mark.parametrize("role,question", survey_questions(), ids=lambda v: v if isinstance(v, str) else v["variable"])
def test_survey_variables_match_the_roles(role, question):
    """Each survey variable is awx_<role variable>; the wrapper maps it; choices are the role's."""
    with open(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml")) as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    variable = question["variable"]
    assert variable.startswith("awx_%s_" % role)
    target = variable[len("awx_"):]
    assert target in options, "%s is not a variable of roles/%s" % (target, role)
    with open(WRAPPER) as handle:
        assert "%s:" % target in handle.read()
    role_choices = options[target].get("choices")
    if question["type"] == "multiplechoice" and role_choices:
        assert set(question["choices"]) - {"keep"} <= set(role_choices)
    if options[target].get("type") == "bool":
        assert set(question["choices"]) == {"yes", "no"}


def test_wrapper_turns_answers_into_typed_role_variables(tmp_path):
    """The wrapper's first play (without site.yml) on one host of each group, then its variables."""
    with open(WRAPPER) as handle:
        plays = yaml.safe_load(handle)
    assert plays[-1] == {"name": "The fleet", "ansible.builtin.import_playbook": "../site.yml"}
    dump = {"name": "dump", "hosts": "all", "gather_facts": False, "tasks": [{
        "name": "dump", "delegate_to": "localhost", "ansible.builtin.copy": {
            "dest": str(tmp_path) + "/{{ inventory_hostname }}.json", "mode": "0600",
            "content": "{{ {'kvm': [kvm_host_gpus | default(None), kvm_host_reboot_ok | default(None),"
                       " kvm_host_hugepages_count | default(None)],"
                       " 'esxi': [esxi_host_gpus | default(None), esxi_host_vms | default(None),"
                       " esxi_host_graphics_type | default(None), esxi_host_vcenter_hostname | default(None)]}"
                       " | to_json }}"}}]}
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(plays[:-1] + [dump]))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({
        "all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
        "kvm_hosts": {"hosts": {"kvm1": {"kvm_host_reboot_ok": False}}},
        "esxi_hosts": {"hosts": {"esxi1": {}}}}))
    answers = {"awx_kvm_host_gpus": "0000:01:00.0, 10de:2204  0000:02:00.0", "awx_kvm_host_reboot_ok": "yes",
               "awx_kvm_host_hugepages_count": "", "awx_esxi_host_gpus": "Tesla T4, 0000:3b:00.0",
               "awx_esxi_host_vms": "- {name: vm1, mode: static, devices: ['0000:3b:00.0']}\n",
               "awx_esxi_host_graphics_type": "keep"}
    vcenter = {"VMWARE_HOST": "vc.example.invalid", "VMWARE_USER": "u", "VMWARE_PASSWORD": "vc-pass-4711"}
    proc = run_playbook(str(playbook), inventory=str(inventory), env=vcenter, extra_args=["-v", "-e", json.dumps(answers)],
                        timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    kvm = json.loads((tmp_path / "kvm1.json").read_text())["kvm"]
    assert kvm == [["0000:01:00.0", "10de:2204", "0000:02:00.0"], True, None]
    esxi = json.loads((tmp_path / "esxi1.json").read_text())["esxi"]
    assert esxi == [["Tesla T4", "0000:3b:00.0"], [{"name": "vm1", "mode": "static", "devices": ["0000:3b:00.0"]}],
                    None, "vc.example.invalid"]
    assert "vc-pass-4711" not in proc.stdout + proc.stderr
