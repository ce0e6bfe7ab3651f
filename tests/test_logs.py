"""TensorFlow's start-up chatter is told from the lines a person must see (real warnings)."""

from __future__ import annotations

import pytest

from instaflyd.logs import is_native_noise

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796138343.686591   13344 port.cc:153] oneDNN custom operations are on. You may"
    " see slightly different numerical results",
    "I0000 00:00:1796138343.692517   13344 cudart_stub.cc:31] Could not find cuda drivers on your"
    " machine, GPU will not be used.",
    "I0000 00:00:1796138343.800485   13344 cpu_feature_guard.cc:227] This TensorFlow binary is"
    " optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI FMA, in other operations,"
    " rebuild TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796138348.994140   13344 cuda_platform.cc:52] failed call to cuInit: INTERNAL:"
    " CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]
REAL = [
    "W0000 00:00:1796138348.994140   13344 op_kernel.cc:1857] OP_REQUIRES failed at"
    " save_restore_v2_ops.cc:144 : NOT_FOUND: model.weights.h5",
    "E0000 00:00:1796138348.994140   13344 bfc_allocator.cc:485] Allocator ran out of memory",
    "12:00:01 worker[12] WARNING instafly.worker: 1 photo waits: no model has been trained yet",
    "/venv/lib/python3.11/site-packages/keras/src/x.py:12: UserWarning: a real warning",
    "Traceback (most recent call last):",
    "",
]


@pytest.mark.parametrize("line", NOISE)
def test_start_up_noise_is_recognised(line: str) -> None:
    assert is_native_noise(line)


@pytest.mark.parametrize("line", REAL)
def test_real_warnings_and_errors_are_not_noise(line: str) -> None:
    assert not is_native_noise(line)


def test_instaflyd_train_by_hand_drops_tensorflows_chatter_from_its_stderr() -> None:
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "from instaflyd.logs import native_noise_filtered\n"
        "with native_noise_filtered():\n"
        "    os.write(2, b'E0000 00:00:1733000000.000000  123 cuda_executor.cc:1228] failed"
        " call to cuInit: INTERNAL: CUDA error\\n')\n"
        "    print('a real warning', file=sys.stderr)\n"
        "    os.write(2, b'I0000 00:00:1733000000.0 123 cpu_feature_guard.cc:210] oneDNN\\n')\n"
        "    os.write(2, b'the last line, unfinished')\n"
        "print('after', file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stderr == "a real warning\nthe last line, unfinishedafter\n"
