"""The triton role's space check (tasks/space.yml), run for real on this machine's mounts: it reads the
filesystem holding the path it is given (triton_root for releases and tarballs, Docker's data-root before
a load), stops naming the path, the filesystem and both figures when the room is short, and passes when
there is room."""
from __future__ import annotations

import json
import shutil
import sys

from playbook_runner import LOGS, ansible_playbook
from tritonops import settings


def check(tmp_path, needed: int):
    play = [{"name": "space", "hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "The role's space check", "ansible.builtin.include_role": {"name": "triton", "tasks_from": "space.yml"},
        "vars": {"triton_space_path": str(tmp_path), "triton_space_needed": needed,
                 "triton_space_what": "the images to load would"}}]}]
    playbook = tmp_path / "space.yml"
    playbook.write_text(json.dumps(play))
    return ansible_playbook("-i", "localhost,", "-c", "local", str(playbook), "-e",
                            json.dumps({"tritonops_repo_root": str(settings.ROOT), "ansible_python_interpreter": sys.executable}),
                            log=LOGS / "space-check.log", timeout=300)


def test_short_room_stops_naming_the_path_and_both_figures(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    result = check(tmp_path, free + 2**40)  # a TiB more than there is
    assert result.rc != 0, result.output[-3000:]
    message = " ".join(result.output.split())
    assert f"Not enough space on localhost: {tmp_path} (filesystem" in message, message[-3000:]
    assert "the images to load would need" in message and "Nothing was changed" in message, message[-3000:]


def test_room_enough_passes(tmp_path):
    result = check(tmp_path, 1)
    assert result.rc == 0, result.output[-3000:]
    assert result.recap()["localhost"]["failed"] == 0
