"""The VQ-GAN codec: frames <-> 8x8 grids of code indices.

Public API::

    from diffusion_reward.models.codec import VQGAN, CodecConfig, frames_to_tensor, tensor_to_frames
    codec = VQGAN.from_pretrained("runs/codec-small/model", device="auto")
    tokens = codec.encode_frames(episode.frames)          # uint8 (T, 64, 64, 3) -> int64 (T, 8, 8)
    x = frames_to_tensor(episode.frames).to(codec.device)  # float (T, 3, 64, 64) in [-1, 1]
    idx = codec.encode_to_indices(x)                       # (T, 8, 8)
    frames = tensor_to_frames(codec.decode_indices(idx))   # back to uint8 (T, 64, 64, 3)
"""

from diffusion_reward.models.codec.quantizer import Quantized, VectorQuantizer
from diffusion_reward.models.codec.vqgan import (PRESETS, VQGAN, CodecConfig, frames_to_tensor,
                                                 keep_unchanged_codes, psnr, tensor_to_frames, unchanged_cells)

__all__ = ["VQGAN", "CodecConfig", "PRESETS", "Quantized", "VectorQuantizer", "frames_to_tensor",
           "tensor_to_frames", "psnr", "unchanged_cells", "keep_unchanged_codes"]
