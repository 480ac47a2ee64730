"""A stand-in for nvidia-ml-py's ``pynvml`` (tests/test_devices.py), with the calls
nsr_study.devices makes. Its node is ``$NSR_FAKE_NVML``: a JSON list of GPUs, each
{"uuid": "GPU-…", "mig": ["MIG-…", …] or absent}, or "fail" (no driver: nvmlInit raises)."""

import json
import os

NVML_DEVICE_MIG_ENABLE = 1


class NVMLError(Exception):
    pass


def _gpus():
    return json.loads(os.environ["NSR_FAKE_NVML"])


def nvmlInit():
    if _gpus() == "fail":
        raise NVMLError("Driver Not Loaded")


def nvmlShutdown():
    pass


def nvmlDeviceGetCount():
    return len(_gpus())


def nvmlDeviceGetHandleByIndex(i):
    return _gpus()[i]


def nvmlDeviceGetUUID(handle):
    return handle["uuid"]


def nvmlDeviceGetMigMode(gpu):
    if "mig" not in gpu:
        raise NVMLError("Not Supported")
    return [NVML_DEVICE_MIG_ENABLE, NVML_DEVICE_MIG_ENABLE]


def nvmlDeviceGetMaxMigDeviceCount(gpu):
    return 7


def nvmlDeviceGetMigDeviceHandleByIndex(gpu, j):
    if j >= len(gpu["mig"]):
        raise NVMLError("Not Found")
    return {"uuid": gpu["mig"][j]}
