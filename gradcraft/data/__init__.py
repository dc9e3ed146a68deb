"""Data: datasets, loading, preprocessing, augmentation, batch mixing, test-time augmentation.

The path of a batch::

    load("fashion-mnist")  ->  ArrayDataset  (x uint8 (N, 1, 28, 28), y int64 (N,))
        -> DataLoader      ->  x / 255 in [0, 1], float32 (B, C, H, W)
        -> transform       ->  augmentation (flips, crops, affine, …) then fitted preprocessing
        -> mixing          ->  Mixup / CutMix: soft targets (B, K)
        -> (x, y) as gradcraft.Tensor

All randomness comes from explicit ``numpy.random.Generator`` objects, so a run is
reproducible and a loader can be checkpointed and resumed mid-epoch.

Submodules: :mod:`~gradcraft.data.augment` (images), :mod:`~gradcraft.data.signal` (1-D),
:mod:`~gradcraft.data.mixing`, :mod:`~gradcraft.data.preprocessing`, :mod:`~gradcraft.data.tta`,
:mod:`~gradcraft.data.preview`; the readers :mod:`~gradcraft.data.idx`,
:mod:`~gradcraft.data.cifar`, :mod:`~gradcraft.data.files`, :mod:`~gradcraft.data.safe_pickle`.
"""

from gradcraft.data import augment, mixing, preprocessing, preview, signal, tta
from gradcraft.data.augment import (
    ColorJitter,
    Compose,
    Cutout,
    ElasticDistortion,
    GaussianNoise,
    LensDistortion,
    OneOf,
    PCAColorAugmentation,
    RandomAffine,
    RandomApply,
    RandomCrop,
    RandomErasing,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomVerticalFlip,
    ScaleJitter,
    Transform,
)
from gradcraft.data.cifar import (
    load_cifar_binary,
    load_cifar_python,
    read_cifar_binary,
    read_cifar_python_batch,
)
from gradcraft.data.dataset import (
    ArrayDataset,
    Dataset,
    Subset,
    split_indices,
    stratified_split_indices,
    train_val_split,
)
from gradcraft.data.datasets import available, cache_dir, load, search_roots
from gradcraft.data.download import download, file_digest
from gradcraft.data.errors import ChecksumError, DatasetError, DatasetNotFoundError
from gradcraft.data.files import load_csv, load_image_folder, load_npz
from gradcraft.data.idx import load_idx, parse_idx, read_idx
from gradcraft.data.loader import DataLoader, to_float
from gradcraft.data.mixing import CutMix, Mixup, one_hot
from gradcraft.data.preprocessing import (
    PCA,
    ZCA,
    ChannelMean,
    MeanImage,
    Preprocessor,
    Standardize,
    load_preprocessor,
)
from gradcraft.data.preview import preview_augmentations
from gradcraft.data.safe_pickle import load_pickle, loads_pickle
from gradcraft.data.sampler import (
    ClassBalancedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

__all__ = [
    "PCA", "ZCA", "ArrayDataset", "ChannelMean", "ChecksumError", "ClassBalancedSampler", "ColorJitter",
    "Compose", "CutMix", "Cutout", "DataLoader", "Dataset", "DatasetError", "DatasetNotFoundError",
    "ElasticDistortion", "GaussianNoise", "LensDistortion", "MeanImage", "Mixup", "OneOf",
    "PCAColorAugmentation", "Preprocessor", "RandomAffine", "RandomApply", "RandomCrop", "RandomErasing",
    "RandomHorizontalFlip", "RandomResizedCrop", "RandomSampler", "RandomVerticalFlip", "Sampler",
    "ScaleJitter", "SequentialSampler", "Standardize", "Subset", "SubsetRandomSampler", "Transform",
    "WeightedRandomSampler", "augment", "available", "cache_dir", "download", "file_digest", "load",
    "load_cifar_binary", "load_cifar_python", "load_csv", "load_idx", "load_image_folder", "load_npz",
    "load_pickle", "load_preprocessor", "loads_pickle", "mixing", "one_hot", "parse_idx", "preprocessing",
    "preview", "preview_augmentations", "read_cifar_binary", "read_cifar_python_batch", "read_idx",
    "search_roots", "signal", "split_indices", "stratified_split_indices", "to_float", "train_val_split",
    "tta",
]
