"""The persisted e-stop: written atomically, read back, and engaged when in doubt."""
import json
import os

from vln_ros.core import estop_store
from vln_ros.core.state_dir import state_dir


def test_missing_file_is_released_and_a_saved_state_reads_back(tmp_path):
    path = str(tmp_path / 'robot' / 'estop.json')
    assert not estop_store.load(path).engaged
    estop_store.save(path, True, now=12.5)
    state = estop_store.load(path)
    assert state.engaged and state.stamp == 12.5 and 'persisted' in state.reason
    estop_store.save(path, False)
    assert not estop_store.load(path).engaged
    assert os.listdir(tmp_path / 'robot') == ['estop.json']  # no temporary files left


def test_an_unreadable_or_odd_file_counts_as_engaged(tmp_path):
    for content in ('{"engaged": tru', '[]', '{"engaged": "no"}', '{}', ''):
        path = tmp_path / 'estop.json'
        path.write_text(content)
        state = estop_store.load(str(path))
        assert state.engaged, content
        assert 'engaged to be safe' in state.reason and str(path) in state.reason


def test_a_directory_in_the_way_counts_as_engaged(tmp_path):
    (tmp_path / 'estop.json').mkdir()
    assert estop_store.load(str(tmp_path / 'estop.json')).engaged


def test_save_replaces_atomically(tmp_path):
    path = tmp_path / 'estop.json'
    estop_store.save(str(path), True)
    before = json.loads(path.read_text())
    estop_store.save(str(path), False)
    after = json.loads(path.read_text())
    assert before['engaged'] is True and after['engaged'] is False


def test_state_dir_is_per_namespace_under_ros_home(tmp_path, monkeypatch):
    monkeypatch.setenv('ROS_HOME', str(tmp_path))
    assert state_dir('/') == str(tmp_path / 'vln_ros')
    assert state_dir('/robot1') == str(tmp_path / 'vln_ros' / 'robot1')
    assert state_dir('/fleet/robot2/') == str(tmp_path / 'vln_ros' / 'fleet' / 'robot2')
    monkeypatch.delenv('ROS_HOME')
    assert state_dir('') == os.path.expanduser(os.path.join('~', '.ros', 'vln_ros'))
