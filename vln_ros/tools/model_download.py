r"""vln_model_download: fetch Qwen3-VL-32B-Instruct (about 65 GB) and verify it.

    vln_model_download                                  # ModelScope or Hugging Face, auto
    vln_model_download --source huggingface --local-dir /data/models/Qwen3-VL-32B-Instruct
    vln_model_download --verify-only /data/models/Qwen3-VL-32B-Instruct --checksums SHA256SUMS
    vln_model_download --dry-run                        # print the download command only

Downloads with the CLI the user has installed: ``modelscope download`` (preferred with
--source auto, as the original setup used ModelScope), else ``hf download`` or
``huggingface-cli download``. Both CLIs resume an interrupted download when run again with
the same --local-dir; the helper retries a failed run (--retries). Then it verifies the
directory: config and tokenizer files present, every shard listed in
model.safetensors.index.json present and complete (each shard's safetensors header against
its file size, the tensors of the index in the shard named for them, the data total against
the index's total_size) and, with --checksums, the sha256 of every listed file.

Note: the download itself needs network access and was not exercised by this project's
tests (there is none where they run); argument handling and verification are tested.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import hashlib
import json
import os
from pathlib import Path
import shutil
import struct
import subprocess
import sys
import time
from typing import Callable

from vln_ros.tools.stop_signals import interrupting_once

DEFAULT_MODEL = 'Qwen/Qwen3-VL-32B-Instruct'
SOURCES = ('auto', 'modelscope', 'huggingface')
INDEX_FILE = 'model.safetensors.index.json'
REQUIRED_FILES = ('config.json', 'tokenizer_config.json')
# Either a fast tokenizer file or the BPE pair is enough to build the tokenizer.
TOKENIZER_CHOICES = (('tokenizer.json',), ('vocab.json', 'merges.txt'))
# A vision-language model also needs its image processor config; LMDeploy reads the
# generation config for sampling defaults. Missing: a warning, not a failure.
RECOMMENDED_FILES = ('preprocessor_config.json', 'generation_config.json')
# Left behind by an interrupted download (Hugging Face, ModelScope).
PARTIAL_MARKERS = ('.incomplete', '._____temp')
_HASH_CHUNK = 8 * 1024 * 1024
_MAX_HEADER = 100 * 1024 * 1024  # safetensors caps its JSON header at 100 MB


# ------------------------------------------------------------------------------ download

def default_local_dir(model: str) -> Path:
    """$MODEL_DIR/<name> (the Docker compose setting), else ./models/<name>."""
    return Path(os.environ.get('MODEL_DIR') or 'models') / model.rsplit('/', 1)[-1]


def pick_source(preference: str, which: Callable[[str], str | None] = shutil.which
                ) -> tuple[str, str]:
    """(source, executable) to download with; raises LookupError when no CLI fits."""
    if preference not in SOURCES:
        raise ValueError(f'source must be one of {SOURCES}, got {preference!r}')
    candidates = {
        'modelscope': [('modelscope', 'modelscope')],
        'huggingface': [('huggingface', 'hf'), ('huggingface', 'huggingface-cli')],
    }
    order = candidates['modelscope'] + candidates['huggingface'] if preference == 'auto' \
        else candidates[preference]
    for source, exe in order:
        path = which(exe)
        if path:
            return source, path
    wanted = {'auto': 'modelscope, hf or huggingface-cli', 'modelscope': 'modelscope',
              'huggingface': 'hf or huggingface-cli'}[preference]
    raise LookupError(f'no download CLI found ({wanted}): pip install modelscope, or '
                      f'pip install -U "huggingface_hub[cli]"')


def download_command(source: str, executable: str, model: str, local_dir: Path) -> list[str]:
    """The CLI call that downloads model into local_dir (resumes when run again)."""
    if source == 'modelscope':
        return [executable, 'download', '--model', model, '--local_dir', str(local_dir)]
    if source == 'huggingface':
        return [executable, 'download', model, '--local-dir', str(local_dir)]
    raise ValueError(f'unknown source {source!r}')


def run_download(cmd: list[str], retries: int, attempt_timeout: float | None,
                 run: Callable = subprocess.run, sleep: Callable[[float], None] = time.sleep
                 ) -> bool:
    """Run the download, again after a failure (it resumes); True once it succeeds."""
    for attempt in range(retries + 1):
        if attempt:
            delay = min(60.0, 5.0 * 2 ** (attempt - 1))
            print(f'download failed; retrying in {delay:.0f} s ({attempt}/{retries}), '
                  'it resumes where it stopped', file=sys.stderr)
            sleep(delay)
        try:
            if run(cmd, timeout=attempt_timeout).returncode == 0:
                return True
        except subprocess.TimeoutExpired:
            print(f'download attempt exceeded {attempt_timeout:.0f} s', file=sys.stderr)
    return False


# ------------------------------------------------------------------------------ verification

@dataclass
class Verification:
    """What the verification found: errors fail it, warnings do not."""

    directory: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    shards: int = 0
    data_bytes: int = 0
    total_size: int | None = None
    hashed_files: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.errors

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {'directory': self.directory, 'ok': self.ok, 'errors': self.errors,
                'warnings': self.warnings, 'shards': self.shards,
                'data_bytes': self.data_bytes, 'total_size': self.total_size,
                'hashed_files': self.hashed_files}


def read_safetensors_header(path: Path) -> tuple[int, dict]:
    """(header length, header dict) of a safetensors file; ValueError if unreadable."""
    with open(path, 'rb') as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError('shorter than a safetensors header')
        (length,) = struct.unpack('<Q', raw)
        if length > _MAX_HEADER:
            raise ValueError(f'header length {length} is not plausible')
        text = f.read(length)
    if len(text) < length:
        raise ValueError('file ends inside its header')
    try:
        header = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f'header is not JSON: {exc}') from exc
    if not isinstance(header, dict):
        raise ValueError('header is not a JSON object')
    return length, header


def shard_data_bytes(header: dict) -> int:
    """Length of the data section a safetensors header describes (its largest end offset)."""
    end = 0
    for name, entry in header.items():
        if name == '__metadata__':
            continue
        offsets = entry.get('data_offsets') if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) for o in offsets)):
            raise ValueError(f'tensor {name!r} has no valid data_offsets')
        end = max(end, offsets[1])
    return end


def _check_shard(path: Path, tensors: set[str], result: Verification) -> int:
    """Verify one shard against its own header and the index; return its data bytes."""
    try:
        length, header = read_safetensors_header(path)
        data = shard_data_bytes(header)
    except (OSError, ValueError) as exc:
        result.errors.append(f'{path.name}: {exc}')
        return 0
    expected = 8 + length + data
    actual = path.stat().st_size
    if actual != expected:
        result.errors.append(f'{path.name}: {actual} bytes, its header describes {expected} '
                             f'({"incomplete download" if actual < expected else "extra data"})')
    missing = sorted(tensors - set(header))
    if missing:
        result.errors.append(f'{path.name}: {len(missing)} tensors of the index are missing '
                             f'(first: {missing[0]})')
    return data


def read_checksums(path: Path) -> dict[str, str]:
    """Parse a sha256sum file ('<hex>  <file>' or '<hex> *<file>' lines)."""
    sums = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        digest, _, name = line.partition(' ')
        name = name.strip().lstrip('*')
        if len(digest) != 64 or not name or any(c not in '0123456789abcdefABCDEF'
                                                 for c in digest):
            raise ValueError(f'{path}:{number}: not a sha256sum line: {line[:80]!r}')
        sums[name] = digest.lower()
    return sums


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_model_dir(directory: Path, checksums: dict[str, str] | None = None
                     ) -> Verification:
    """Verify a downloaded model directory; see the module docstring for what is checked."""
    directory = Path(directory)
    result = Verification(str(directory))
    if not directory.is_dir():
        result.errors.append(f'{directory} is not a directory')
        return result
    for name in REQUIRED_FILES:
        if not (directory / name).is_file():
            result.errors.append(f'missing {name}')
    if not any(all((directory / n).is_file() for n in choice) for choice in TOKENIZER_CHOICES):
        result.errors.append('missing tokenizer files (tokenizer.json, or vocab.json and '
                             'merges.txt)')
    for name in RECOMMENDED_FILES:
        if not (directory / name).is_file():
            result.warnings.append(f'missing {name}')
    _verify_weights(directory, result)
    partial = sorted(str(p.relative_to(directory)) for p in directory.rglob('*')
                     if any(p.name.endswith(m) or p.name == m for m in PARTIAL_MARKERS))
    if partial:
        result.warnings.append(f'left-overs of an interrupted download: {", ".join(partial[:3])}'
                               + (' ...' if len(partial) > 3 else ''))
    if checksums:
        _verify_checksums(directory, checksums, result)
    return result


def _verify_weights(directory: Path, result: Verification) -> None:
    index_path = directory / INDEX_FILE
    if not index_path.is_file():
        single = directory / 'model.safetensors'
        if single.is_file():  # small models come as one file without an index
            result.shards = 1
            result.data_bytes = _check_shard(single, set(), result)
        else:
            result.errors.append(f'missing {INDEX_FILE} (and no model.safetensors)')
        return
    try:
        index = json.loads(index_path.read_text())
        weight_map = index['weight_map']
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError('weight_map is empty')
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result.errors.append(f'{INDEX_FILE} is unreadable: {exc!r}')
        return
    total = (index.get('metadata') or {}).get('total_size')
    result.total_size = int(total) if isinstance(total, int | float) else None
    by_shard: dict[str, set[str]] = {}
    for tensor, shard in weight_map.items():
        by_shard.setdefault(str(shard), set()).add(tensor)
    result.shards = len(by_shard)
    complete = True
    for shard in sorted(by_shard):
        path = directory / shard
        if not path.is_file():
            result.errors.append(f'missing shard {shard}')
            complete = False
            continue
        result.data_bytes += _check_shard(path, by_shard[shard], result)
    if complete and result.total_size is not None and result.data_bytes != result.total_size:
        result.errors.append(f'the shards hold {result.data_bytes} bytes of tensors, the index '
                             f'says total_size {result.total_size}')


def _verify_checksums(directory: Path, checksums: dict[str, str], result: Verification) -> None:
    for name, digest in sorted(checksums.items()):
        path = directory / name
        if not path.is_file():
            result.errors.append(f'checksum listed for missing file {name}')
            continue
        actual = sha256_of(path)
        result.hashed_files += 1
        if actual != digest:
            result.errors.append(f'{name}: sha256 {actual[:12]}..., expected {digest[:12]}...')


# ------------------------------------------------------------------------------ command line

def build_parser() -> argparse.ArgumentParser:
    """Command-line flags of vln_model_download."""
    doc = __doc__.split('\n\n')
    p = argparse.ArgumentParser(
        prog='vln_model_download', description=doc[0].split(': ', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n\n'.join(doc[1:]).strip('\n') + '\n\nExit status: 0 verified, 1 download or '
        'verification failed, 2 bad arguments or no download CLI.')
    p.add_argument('--model', default=DEFAULT_MODEL, help='model id on the hub (default: '
                   '%(default)s)')
    p.add_argument('--source', choices=SOURCES, default='auto',
                   help='where from: modelscope, huggingface, or auto (the first CLI found, '
                   'ModelScope first)')
    p.add_argument('--local-dir', type=Path, help='target directory (default: '
                   '$MODEL_DIR/<name>, else ./models/<name>)')
    p.add_argument('--verify-only', type=Path, metavar='DIR',
                   help='do not download: verify DIR and exit')
    p.add_argument('--checksums', type=Path, metavar='FILE',
                   help='sha256sum-style file of expected hashes (paths relative to the model '
                   'directory) to check as well')
    p.add_argument('--retries', type=int, default=3, help='re-runs of a failed download '
                   '(each resumes; default: %(default)s)')
    p.add_argument('--attempt-timeout', type=float, default=0.0,
                   help='seconds one download attempt may take (default 0: no limit, a 65 GB '
                   'download may take hours)')
    p.add_argument('--dry-run', action='store_true', help='print the download command only')
    p.add_argument('--json', action='store_true', help='print the verification as JSON')
    return p


def _print_verification(result: Verification, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    for error in result.errors:
        print(f'[FAIL] {error}')
    for warning in result.warnings:
        print(f'[WARN] {warning}')
    size = f'{result.data_bytes / 1e9:.1f} GB of tensors in {result.shards} shard(s)'
    hashed = f', {result.hashed_files} sha256 checked' if result.hashed_files else ''
    verdict = 'verified' if result.ok else 'NOT verified'
    print(f'{result.directory}: {verdict} ({size}{hashed})')


def main(argv: list[str] | None = None, which: Callable[[str], str | None] = shutil.which,
         run: Callable = subprocess.run) -> int:
    """Download (unless --verify-only) and verify; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.retries < 0:
        parser.error('--retries must be >= 0')
    if args.attempt_timeout < 0:
        parser.error('--attempt-timeout must be >= 0')
    if args.verify_only and (args.local_dir or args.dry_run):
        parser.error('--verify-only takes the directory itself; it does not combine with '
                     '--local-dir or --dry-run')
    checksums = None
    if args.checksums:
        try:
            checksums = read_checksums(args.checksums)
        except (OSError, ValueError) as exc:
            parser.error(f'--checksums: {exc}')
    if args.verify_only:
        result = verify_model_dir(args.verify_only, checksums)
        _print_verification(result, args.json)
        return 0 if result.ok else 1

    local_dir = args.local_dir or default_local_dir(args.model)
    try:
        source, exe = pick_source(args.source, which)
    except LookupError as exc:
        print(f'vln_model_download: {exc}', file=sys.stderr)
        return 2
    cmd = download_command(source, exe, args.model, local_dir)
    print(' '.join(cmd), file=sys.stderr if args.json else sys.stdout)
    if args.dry_run:
        return 0
    local_dir.mkdir(parents=True, exist_ok=True)
    try:
        with interrupting_once():
            done = run_download(cmd, args.retries, args.attempt_timeout or None, run=run)
    except KeyboardInterrupt:
        # Not 0: a half-downloaded model must never read as ready. The CLI resumes.
        print(f'vln_model_download: interrupted; run it again to resume into {local_dir}',
              file=sys.stderr)
        return 130
    if not done:
        print(f'vln_model_download: the download failed {args.retries + 1} times; run it '
              'again to resume', file=sys.stderr)
        return 1
    result = verify_model_dir(local_dir, checksums)
    _print_verification(result, args.json)
    return 0 if result.ok else 1


if __name__ == '__main__':
    sys.exit(main())
