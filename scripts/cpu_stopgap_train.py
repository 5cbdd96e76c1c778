"""CPU stop-gap training of the bundled default model: exactly how its weights were made.

Not the release recipe (``configs/fer2013_resnet18.toml``, meant for a GPU): a stand-alone,
time-budgeted loop for a 2-core machine with no GPU. Same architecture as
``resnet18_emotion(stem="middle")``, bf16 autocast on the CPU, SGD Nesterov, label smoothing
0.1, flip + affine + random-erasing augmentation, and a cosine learning rate driven by the
elapsed fraction of the time budget (so it adapts to a shared, busy CPU).

The default model was made in two runs (the first was cut short by CPU contention):

    python scripts/cpu_stopgap_train.py 7000                       # 2 epochs, saved as epoch2.pt
    python scripts/cpu_stopgap_train.py 5000 runs/stopgap/epoch2.pt 0.036

then packaged with ``scripts/package_default_model.py runs/stopgap/best.pt``.
"""

import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

torch.set_num_threads(int(os.environ.get("THREADS", "1")))  # 2 threads under contention collapse
ROOT = Path("../shared/data/fer2013")
EMO = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
BUDGET = float(sys.argv[1]) if len(sys.argv) > 1 else 95 * 60
OUT = Path("runs/stopgap")
OUT.mkdir(parents=True, exist_ok=True)
MEAN, STD = 0.5077, 0.2550


def load_one(p):
    return np.asarray(Image.open(p).convert("L"), dtype=np.uint8)


def load(split):
    paths, labels = [], []
    for d in sorted((ROOT / split).iterdir()):
        for p in sorted(d.iterdir()):
            paths.append(p)
            labels.append(EMO.index(d.name))
    with ProcessPoolExecutor(2) as ex:
        imgs = list(ex.map(load_one, paths, chunksize=512))
    return torch.from_numpy(np.stack(imgs)), torch.tensor(labels)


def make():
    m = torchvision.models.resnet18(num_classes=7)
    m.conv1 = nn.Conv2d(1, 64, 3, 2, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


def augment(x, g):  # x float N,1,48,48 in [0,1]
    n = x.shape[0]
    ang = (torch.rand(n, generator=g) * 2 - 1) * math.radians(10)
    sc = 1 + (torch.rand(n, generator=g) * 2 - 1) * 0.1
    tx = (torch.rand(n, generator=g) * 2 - 1) * 0.2
    ty = (torch.rand(n, generator=g) * 2 - 1) * 0.2
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    )
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # random erasing p=0.5, area 2-20%
    er = torch.rand(n, generator=g) < 0.5
    area = (torch.rand(n, generator=g) * 0.18 + 0.02) * 48 * 48
    ar = torch.exp((torch.rand(n, generator=g) * 2 - 1) * math.log(3))
    h = (area * ar).sqrt().clamp(1, 47).long()
    w = (area / ar).sqrt().clamp(1, 47).long()
    y0 = (torch.rand(n, generator=g) * (48 - h)).long()
    x0 = (torch.rand(n, generator=g) * (48 - w)).long()
    yy = torch.arange(48).view(1, 48, 1)
    xx = torch.arange(48).view(1, 1, 48)
    mask = (
        er.view(n, 1, 1)
        & (yy >= y0.view(n, 1, 1))
        & (yy < (y0 + h).view(n, 1, 1))
        & (xx >= x0.view(n, 1, 1))
        & (xx < (x0 + w).view(n, 1, 1))
    )
    x = torch.where(mask.unsqueeze(1), torch.rand(x.shape, generator=g), x)
    return x


@torch.inference_mode()
def evaluate(m, X, Y, tta=False):
    m.eval()
    preds = []
    for i in range(0, len(X), 256):
        x = (X[i : i + 256].float().unsqueeze(1) / 255 - MEAN) / STD
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            p = m(x).float().softmax(1)
            if tta:
                p = p + m(x.flip(3)).float().softmax(1)
        preds.append(p.argmax(1))
    m.train()
    pr = torch.cat(preds)
    return (pr == Y).float().mean().item()


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    t0 = time.time()
    Xtr, Ytr = load("train")
    Xte, Yte = load("test")
    print(f"loaded {len(Xtr)} train {len(Xte)} test in {time.time() - t0:.1f}s", flush=True)
    m = make()
    INIT = sys.argv[2] if len(sys.argv) > 2 else None
    if INIT:  # warm start: continue a run that was cut short
        m.load_state_dict(torch.load(INIT))
        print("init from", INIT, flush=True)
    m = m.to(memory_format=torch.channels_last)
    bs, wd = 64, 5e-4
    lr0 = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    decay = [p for n, p in m.named_parameters() if p.ndim > 1]
    no = [p for n, p in m.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": wd}, {"params": no, "weight_decay": 0}],
        lr=lr0,
        momentum=0.9,
        nesterov=True,
    )
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    start = time.time()
    step = 0
    total = None
    warm = 1 if INIT else 300
    best = 0.0
    ep = 0
    log = []
    while True:
        perm = torch.randperm(len(Xtr), generator=g)
        seen = 0
        tl = 0.0
        te = time.time()
        for i in range(0, len(perm) - bs + 1, bs):
            idx = perm[i : i + bs]
            x = augment(Xtr[idx].float().unsqueeze(1) / 255, g)
            x = ((x - MEAN) / STD).contiguous(memory_format=torch.channels_last)
            frac = min(
                1.0, (time.time() - start) / BUDGET
            )  # time-based cosine: adapts to a shared CPU
            if frac >= 1.0:
                total = step
            lr = lr0 * min(1.0, (step + 1) / warm) * (0.5 * (1 + math.cos(math.pi * frac)))
            for pg in opt.param_groups:
                pg["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = crit(m(x).float(), Ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += bs
            tl += loss.item()
            if total is not None and step >= total:
                break
        ep += 1
        acc = evaluate(m, Xte, Yte)
        row = dict(
            epoch=ep,
            step=step,
            loss=tl / (seen / bs),
            val_acc=acc,
            lr=lr,
            img_s=seen / (time.time() - te),
            elapsed=time.time() - start,
        )
        log.append(row)
        print(json.dumps(row), flush=True)
        if acc > best:
            best = acc
            torch.save(m.state_dict(), OUT / "best.pt")
        torch.save(m.state_dict(), OUT / "last.pt")
        (OUT / "log.json").write_text(json.dumps(log, indent=1))
        if total is not None and step >= total:
            break
    m.load_state_dict(torch.load(OUT / "best.pt"))
    print("best", best, "tta", evaluate(m, Xte, Yte, tta=True), flush=True)


if __name__ == "__main__":
    main()
