import json
from pathlib import Path

DEFAULTS = {"batch_size": 8, "learning_rate": 3e-4, "epochs": 1}


def load_settings(path: str) -> dict:
    """读取 JSON 配置文件并用默认值补全缺失的键；未知键报错。"""
    p = Path(path)
    user = json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        raise KeyError(f"{path}: unknown keys {unknown}")
    return {**DEFAULTS, **user}


print(load_settings("missing.json"))
