"""The paper's ImageNet numbers (Zeiler & Fergus v3, Tables 2 and 3; error %), keyed by our model names.

Source: shared/reference/paper-facts.md section 8 (Table 3 is a single transcription of v3, consistent with
Table 2). ``train_top1`` is Table 3's train top-1 error; Table 2 rows have no train column."""

from __future__ import annotations

# model name -> (row label, train top-1, val top-1, val top-5)
TABLE3: dict[str, tuple[str, float | None, float, float]] = {
    "alexnet": ("Our replication of Krizhevsky, 1 convnet", 35.1, 40.5, 18.1),
    "alexnet_no34": ("AlexNet, removed layers 3,4", 41.8, 45.4, 22.1),
    "alexnet_no7": ("AlexNet, removed layer 7", 27.4, 40.0, 18.4),
    "alexnet_no67": ("AlexNet, removed layers 6,7", 27.4, 44.8, 22.4),
    "alexnet_no3467": ("AlexNet, removed layers 3,4,6,7", 71.1, 71.3, 50.1),
    "alexnet_fc2048": ("AlexNet, layers 6,7: 2048 units", 40.3, 41.7, 18.8),
    "alexnet_fc8192": ("AlexNet, layers 6,7: 8192 units", 26.8, 40.0, 18.1),
    "zfnet": ("Our model (Fig. 3)", 33.1, 38.4, 16.5),
    "zfnet_fc2048": ("Fig. 3, layers 6,7: 2048 units", 38.2, 40.2, 17.6),
    "zfnet_fc8192": ("Fig. 3, layers 6,7: 8192 units", 22.0, 38.8, 17.0),
    "zfnet_wide345": ("Fig. 3, layers 3,4,5: 512,1024,512 maps (Table 2 (b))", 18.8, 37.5, 16.0),
    "zfnet_wide345_fc8192": ("Fig. 3, 8192 units AND layers 3,4,5: 512,1024,512", 10.0, 38.3, 16.9),
}

# Table 2 ensembles (softmax averaged; eval.py with a list of checkpoints): (val top-1, val top-5, test top-5)
TABLE2_ENSEMBLES: dict[str, tuple[float, float, float | None]] = {
    "5 convnets as per Fig. 3 (a)": (36.7, 15.3, 15.3),
    "6 convnets, (a) & (b) combined": (36.0, 14.7, 14.8),
}
