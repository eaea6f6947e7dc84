"""vln_model_download: CLI choice, the download command, retries and the verification.

The download itself needs network access and is not run here; the verification runs on
small model directories written by the tests (real safetensors layout, tiny tensors).
"""
import hashlib
import json
import struct
import subprocess

import pytest

from vln_ros.tools import model_download as md


def _write_shard(path, tensors: dict[str, int]) -> int:
    """Write a safetensors file with tensors of the given byte sizes; return data bytes."""
    header, offset = {'__metadata__': {'format': 'pt'}}, 0
    for name, size in tensors.items():
        header[name] = {'dtype': 'U8', 'shape': [size], 'data_offsets': [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b' ' * (-len(raw) % 8)
    path.write_bytes(struct.pack('<Q', len(raw)) + raw + bytes(range(256)) * (offset // 256)
                     + bytes(offset % 256))
    return offset


@pytest.fixture
def model_dir(tmp_path):
    """A complete tiny model in the Hugging Face layout: two shards and an index."""
    d = tmp_path / 'Qwen3-VL-tiny'
    d.mkdir()
    for name in ('config.json', 'tokenizer_config.json', 'tokenizer.json',
                 'preprocessor_config.json', 'generation_config.json'):
        (d / name).write_text('{}')
    shards = {'model-00001-of-00002.safetensors': {'a.weight': 1000, 'b.weight': 24},
              'model-00002-of-00002.safetensors': {'c.weight': 512}}
    total = sum(_write_shard(d / shard, tensors) for shard, tensors in shards.items())
    weight_map = {t: shard for shard, tensors in shards.items() for t in tensors}
    (d / md.INDEX_FILE).write_text(json.dumps({'metadata': {'total_size': total},
                                               'weight_map': weight_map}))
    return d


def _sums(d, names):
    return {n: hashlib.sha256((d / n).read_bytes()).hexdigest() for n in names}


# ------------------------------------------------------------------------------ verification

def test_a_complete_directory_verifies(model_dir):
    result = md.verify_model_dir(model_dir)
    assert result.ok, result.errors
    assert result.shards == 2 and result.data_bytes == result.total_size == 1536
    assert result.warnings == []


def test_missing_files_are_named(model_dir):
    (model_dir / 'config.json').unlink()
    (model_dir / 'tokenizer.json').unlink()
    (model_dir / 'preprocessor_config.json').unlink()
    result = md.verify_model_dir(model_dir)
    assert not result.ok
    assert 'missing config.json' in result.errors
    assert any('tokenizer' in e for e in result.errors)
    assert result.warnings == ['missing preprocessor_config.json']


def test_bpe_tokenizer_files_are_enough(model_dir):
    (model_dir / 'tokenizer.json').unlink()
    (model_dir / 'vocab.json').write_text('{}')
    assert not md.verify_model_dir(model_dir).ok  # merges.txt still missing
    (model_dir / 'merges.txt').write_text('#version: 0.2\n')
    assert md.verify_model_dir(model_dir).ok


def test_a_missing_shard_fails(model_dir):
    (model_dir / 'model-00002-of-00002.safetensors').unlink()
    result = md.verify_model_dir(model_dir)
    assert result.errors == ['missing shard model-00002-of-00002.safetensors']


def test_a_truncated_shard_is_an_incomplete_download(model_dir):
    shard = model_dir / 'model-00001-of-00002.safetensors'
    shard.write_bytes(shard.read_bytes()[:-100])
    result = md.verify_model_dir(model_dir)
    assert len(result.errors) == 1 and 'incomplete download' in result.errors[0]
    assert shard.name in result.errors[0]


def test_a_shard_cut_inside_its_header_fails(model_dir):
    shard = model_dir / 'model-00002-of-00002.safetensors'
    shard.write_bytes(shard.read_bytes()[:20])
    result = md.verify_model_dir(model_dir)
    assert any('ends inside its header' in e for e in result.errors)


def test_total_size_mismatch_and_missing_tensors_fail(model_dir):
    index = json.loads((model_dir / md.INDEX_FILE).read_text())
    index['metadata']['total_size'] += 1
    index['weight_map']['d.weight'] = 'model-00002-of-00002.safetensors'
    (model_dir / md.INDEX_FILE).write_text(json.dumps(index))
    errors = md.verify_model_dir(model_dir).errors
    assert any('total_size 1537' in e for e in errors)
    assert any('tensors of the index are missing (first: d.weight)' in e for e in errors)


def test_unreadable_index_and_single_file_models(model_dir, tmp_path):
    (model_dir / md.INDEX_FILE).write_text('{"weight_map": {}}')
    assert any('unreadable' in e for e in md.verify_model_dir(model_dir).errors)
    (model_dir / md.INDEX_FILE).unlink()
    assert any('missing model.safetensors.index.json' in e
               for e in md.verify_model_dir(model_dir).errors)
    _write_shard(model_dir / 'model.safetensors', {'w': 64})
    result = md.verify_model_dir(model_dir)
    assert result.ok and result.data_bytes == 64
    assert md.verify_model_dir(tmp_path / 'nope').errors == [f'{tmp_path / "nope"} is not a '
                                                            'directory']


def test_leftovers_of_an_interrupted_download_warn(model_dir):
    partial = model_dir / '.cache' / 'huggingface' / 'download'
    partial.mkdir(parents=True)
    (partial / 'abc.incomplete').write_bytes(b'x')
    result = md.verify_model_dir(model_dir)
    assert result.ok and 'interrupted download' in result.warnings[0]


def test_checksums_are_checked(model_dir, tmp_path):
    names = ['config.json', 'model-00001-of-00002.safetensors']
    sums = _sums(model_dir, names)
    result = md.verify_model_dir(model_dir, sums)
    assert result.ok and result.hashed_files == 2
    sums['config.json'] = '0' * 64
    sums['gone.bin'] = '1' * 64
    errors = md.verify_model_dir(model_dir, sums).errors
    assert any(e.startswith('config.json: sha256') for e in errors)
    assert 'checksum listed for missing file gone.bin' in errors


def test_read_checksums_takes_sha256sum_output(tmp_path):
    f = tmp_path / 'SHA256SUMS'
    f.write_text(f'# comment\n{"a" * 64}  config.json\n{"B" * 64} *model.bin\n\n')
    assert md.read_checksums(f) == {'config.json': 'a' * 64, 'model.bin': 'b' * 64}
    f.write_text('abc  config.json\n')
    with pytest.raises(ValueError, match='SHA256SUMS:1'):
        md.read_checksums(f)


# ------------------------------------------------------------------------------ download

def _which(*available):
    return lambda exe: f'/usr/bin/{exe}' if exe in available else None


def test_pick_source_prefers_modelscope_then_hf():
    assert md.pick_source('auto', _which('modelscope', 'hf')) == ('modelscope',
                                                                  '/usr/bin/modelscope')
    assert md.pick_source('auto', _which('hf', 'huggingface-cli')) == ('huggingface',
                                                                       '/usr/bin/hf')
    assert md.pick_source('huggingface', _which('modelscope', 'huggingface-cli')) == (
        'huggingface', '/usr/bin/huggingface-cli')
    with pytest.raises(LookupError, match='pip install modelscope'):
        md.pick_source('modelscope', _which('hf'))
    with pytest.raises(ValueError):
        md.pick_source('ftp', _which())


def test_download_commands(tmp_path):
    assert md.download_command('modelscope', 'modelscope', md.DEFAULT_MODEL, tmp_path) == [
        'modelscope', 'download', '--model', 'Qwen/Qwen3-VL-32B-Instruct', '--local_dir',
        str(tmp_path)]
    assert md.download_command('huggingface', 'hf', md.DEFAULT_MODEL, tmp_path) == [
        'hf', 'download', 'Qwen/Qwen3-VL-32B-Instruct', '--local-dir', str(tmp_path)]


def test_default_local_dir_follows_model_dir(monkeypatch):
    monkeypatch.setenv('MODEL_DIR', '/data/models')
    assert str(md.default_local_dir(md.DEFAULT_MODEL)) == '/data/models/Qwen3-VL-32B-Instruct'
    monkeypatch.delenv('MODEL_DIR')
    assert str(md.default_local_dir('x/y')) == 'models/y'


def test_run_download_retries_then_gives_up():
    calls, sleeps = [], []

    def run(cmd, timeout):
        calls.append((cmd, timeout))
        if len(calls) == 2:
            raise subprocess.TimeoutExpired(cmd, timeout)
        return subprocess.CompletedProcess(cmd, 0 if len(calls) == 3 else 1)
    assert md.run_download(['dl'], retries=3, attempt_timeout=5.0, run=run, sleep=sleeps.append)
    assert len(calls) == 3 and sleeps == [5.0, 10.0] and calls[0] == (['dl'], 5.0)
    calls.clear()
    assert not md.run_download(['dl'], retries=0, attempt_timeout=None,
                               run=lambda c, timeout: subprocess.CompletedProcess(c, 1),
                               sleep=sleeps.append)


# ------------------------------------------------------------------------------ main

def test_verify_only_exit_status_and_json(model_dir, capsys):
    assert md.main(['--verify-only', str(model_dir), '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['ok'] and report['shards'] == 2
    (model_dir / 'model-00001-of-00002.safetensors').unlink()
    assert md.main(['--verify-only', str(model_dir)]) == 1
    assert 'NOT verified' in capsys.readouterr().out


def test_verify_only_with_a_checksum_file(model_dir, tmp_path, capsys):
    sums = tmp_path / 'SHA256SUMS'
    sums.write_text(''.join(f'{h}  {n}\n' for n, h in _sums(model_dir, ['config.json']).items()))
    assert md.main(['--verify-only', str(model_dir), '--checksums', str(sums)]) == 0
    assert '1 sha256 checked' in capsys.readouterr().out


@pytest.mark.parametrize('argv', [
    ['--retries', '-1'], ['--source', 'ftp'], ['--verify-only', 'x', '--dry-run'],
    ['--verify-only', 'x', '--local-dir', 'y'], ['--checksums', '/nonexistent/SUMS'],
    ['--attempt-timeout', '-5']])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        md.main(argv)
    assert exc.value.code == 2


def test_help_says_the_download_is_not_exercised(capsys):
    with pytest.raises(SystemExit):
        md.main(['--help'])
    out = capsys.readouterr().out
    assert 'not exercised' in out and '--verify-only' in out


def test_dry_run_prints_the_command_and_downloads_nothing(tmp_path, capsys):
    def run(*a, **k):
        raise AssertionError('dry run must not download')
    rc = md.main(['--dry-run', '--local-dir', str(tmp_path / 'm')], which=_which('hf'), run=run)
    assert rc == 0
    assert capsys.readouterr().out.strip() == (
        f'/usr/bin/hf download Qwen/Qwen3-VL-32B-Instruct --local-dir {tmp_path / "m"}')
    assert not (tmp_path / 'm').exists()


def test_no_cli_exits_2(tmp_path, capsys):
    assert md.main(['--local-dir', str(tmp_path)], which=_which()) == 2
    assert 'no download CLI found' in capsys.readouterr().err


def test_download_then_verify(model_dir, tmp_path, capsys):
    target = tmp_path / 'target'
    calls = []

    def fake_download(cmd, timeout):
        # Stands in for the CLI: 'downloads' the tiny model into --local_dir.
        calls.append(cmd)
        import shutil
        shutil.copytree(model_dir, cmd[-1], dirs_exist_ok=True)
        return subprocess.CompletedProcess(cmd, 0)
    rc = md.main(['--source', 'modelscope', '--local-dir', str(target)],
                 which=_which('modelscope'), run=fake_download)
    assert rc == 0 and calls[0][:4] == ['/usr/bin/modelscope', 'download', '--model',
                                        md.DEFAULT_MODEL]
    assert 'verified' in capsys.readouterr().out

    def failing(cmd, timeout):
        return subprocess.CompletedProcess(cmd, 1)
    assert md.main(['--local-dir', str(target), '--retries', '0'], which=_which('hf'),
                   run=failing) == 1


def test_ctrl_c_during_the_download_is_reported_not_ready(tmp_path, capsys):
    import signal

    before = signal.getsignal(signal.SIGINT)

    def interrupted(cmd, timeout):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C while the CLI downloads
        return subprocess.CompletedProcess(cmd, 0)
    rc = md.main(['--local-dir', str(tmp_path / 'm'), '--retries', '0'], which=_which('hf'),
                 run=interrupted)
    assert rc == 130  # never 0: a half-downloaded model must not read as ready
    assert 'interrupted' in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back
