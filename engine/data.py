"""The training loader: shuffling shared by all processes, augmentation drawn by each on its own."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from tqdm import tqdm

from dataset import VOCDataset, collate_fn


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from ``parts`` (seed, epoch, rank, ...): distinct parts give unrelated streams."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_train_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    """Shuffled full batches; under DDP each process gets its own share (DistributedSampler, seeded alike on
    every process). Call :func:`start_epoch` before each epoch."""
    generator = torch.Generator()
    sampler = (
        DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        if world_size > 1
        else RandomSampler(dataset, generator=generator)
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        drop_last=True,
        generator=generator,
    )


def start_epoch(loader: DataLoader, seed: int, epoch: int, rank: int = 0) -> None:
    """Seed epoch ``epoch``'s randomness from (seed, epoch, rank) alone, so a resumed run draws what an
    uninterrupted one would: the order (one for all processes under DDP) and the augmentation, which
    each process draws on its own, in its workers (seeded from the loader's generator) or in itself."""
    own = derived_seed(seed, epoch, rank)
    loader.generator.manual_seed(own)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    seed_everything(own)


def cache_pictures(dataset: VOCDataset, show_progress: bool = True) -> None:
    """Decode every picture once into the data set's cache, and cut the objects that ``"paste"`` pastes (before
    workers fork, so that they share both)."""
    if dataset.cache:
        for i in tqdm(range(len(dataset)), desc="caching pictures", disable=not show_progress, leave=False):
            dataset.load_picture(i)
    if dataset.paste:
        dataset.object_bank()
