# SPDX-License-Identifier: Apache-2.0
"""D3AD dynamic noise (Tebbe & Tayyub 2024) on brain MRI: see ``README.md`` beside this file.

``network``: the autoencoder + latent denoiser + feature extractor module; ``dynamic``: the KNN noise level;
``reconstruction``: Algorithm 1 with the DDAD correction; ``inferer``: the bundle's inferer; ``training``: the
stages beside the denoiser; ``fitting``: the latent scale and the feature bank; ``calibration``: the label-free
normalisation of the map terms; ``pretrained*``: the paper's pretrained parts from the user's files; ``domain``: the
extractor's adaptation (eq. 11, BatchNorm statistics).
"""

from .calibration import calibrate_d3ad
from .domain import (
    DomainAdaptationLoss,
    FeaturePairNet,
    ReconstructionPairPrepareBatch,
    adapt_features,
    recalibrate_batchnorm,
)
from .dynamic import distance_bins, dynamic_timesteps, fit_bin_edges, knn_mean_distance, timestep_table
from .fitting import (
    FeatureBankHandler,
    fit_feature_bank,
    fit_latent_scale,
    refit_feature_bank,
    save_with_bank,
    sync_fitted_parts,
)
from .inferer import CALIBRATED_RANGES, D3ADInferer
from .network import D3ADModel, FeaturePretrainNet
from .pretrained import load_pretrained_parts, read_state_dict
from .pretrained_autoencoder import LDMAutoencoderKL, load_diffusers_autoencoder
from .pretrained_features import TorchvisionResNetFeatures, load_torchvision_resnet
from .reconstruction import ddad_reconstruct, step_sequences
from .training import (
    AutoencoderKLLoss,
    ImagePrepareBatch,
    LatentDiffusionPrepareBatch,
    MaskedImagePrepareBatch,
    train_stage,
)

__all__ = [
    "AutoencoderKLLoss",
    "CALIBRATED_RANGES",
    "D3ADInferer",
    "D3ADModel",
    "DomainAdaptationLoss",
    "FeaturePairNet",
    "LDMAutoencoderKL",
    "ReconstructionPairPrepareBatch",
    "TorchvisionResNetFeatures",
    "adapt_features",
    "load_diffusers_autoencoder",
    "load_pretrained_parts",
    "load_torchvision_resnet",
    "read_state_dict",
    "recalibrate_batchnorm",
    "save_with_bank",
    "FeatureBankHandler",
    "FeaturePretrainNet",
    "ImagePrepareBatch",
    "LatentDiffusionPrepareBatch",
    "MaskedImagePrepareBatch",
    "calibrate_d3ad",
    "ddad_reconstruct",
    "distance_bins",
    "dynamic_timesteps",
    "fit_bin_edges",
    "fit_feature_bank",
    "fit_latent_scale",
    "knn_mean_distance",
    "refit_feature_bank",
    "step_sequences",
    "sync_fitted_parts",
    "timestep_table",
    "train_stage",
]
