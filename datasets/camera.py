"""The relative camera of a pair as the model's input vector (camera_dim 4): [sin da, cos da, sin de, cos de]."""
import torch


def camera_vector(delta_azimuth_deg, delta_elevation_deg=0.0) -> torch.Tensor:
    """Relative camera as [sin da, cos da, sin de, cos de] (degrees in, shape [..., 4])."""
    da = torch.deg2rad(torch.as_tensor(delta_azimuth_deg, dtype=torch.float32))
    de = torch.deg2rad(torch.as_tensor(delta_elevation_deg, dtype=torch.float32))
    da, de = torch.broadcast_tensors(da, de)
    return torch.stack([da.sin(), da.cos(), de.sin(), de.cos()], dim=-1)


def camera_of(meta: dict) -> torch.Tensor:
    """Relative camera of a pair as the model expects it: [sin da, cos da, sin de, cos de]."""
    def elevation(view):
        return (meta.get(view) or {}).get("elevation_deg") or 0.0
    return camera_vector(float(meta.get("delta_azimuth_deg") or 0.0), elevation("tgt") - elevation("src"))
