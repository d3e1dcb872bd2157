"""Orbit cameras: poses on a sphere around the origin, and the random view pairs of an object."""
import hashlib
from dataclasses import dataclass

import numpy as np

FOV_DEG = 40.0      # vertical = horizontal field of view (square images)
RADIUS = 2.5        # camera distance: a unit cube seen from any side just fits the frame
DEFAULT_ELEVATION_RANGE = (-10.0, 40.0)   # degrees, as in SyncDreamer's input views


@dataclass(frozen=True)
class View:
    """One camera on the orbit: angles in degrees, distance in object units."""
    azimuth_deg: float
    elevation_deg: float
    radius: float = RADIUS

    def cam2world(self):
        """4x4 camera-to-world matrix, OpenGL convention (camera looks along its -Z, +Y up, +X right)."""
        return orbit_pose(self.azimuth_deg, self.elevation_deg, self.radius)

    def to_json(self):
        """The view as the `src`/`tgt` object of a sample's json."""
        return {"azimuth_deg": self.azimuth_deg, "elevation_deg": self.elevation_deg, "radius": self.radius,
                "cam2world": self.cam2world().tolist()}


def orbit_pose(azimuth_deg, elevation_deg, radius):
    """Camera at r*(cos e sin a, sin e, cos e cos a) looking at the origin with world +Y up.

    Azimuth 0 sits on +Z looking along -Z; azimuth grows from +Z towards +X (counter-clockwise seen from above),
    so a positive azimuth step shows the object turning clockwise seen from above.
    """
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    position = radius * np.array([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)])
    back = position / np.linalg.norm(position)            # camera +Z points away from the target
    # The cross products written out (np.cross costs ~20 us on 3-vectors, and this runs twice per image):
    right = np.array([back[2], 0.0, -back[0]])            # +Y x back
    right /= np.linalg.norm(right)                        # |elevation| < 90, so never degenerate
    up = np.array([back[1] * right[2] - back[2] * right[1], back[2] * right[0] - back[0] * right[2],
                   back[0] * right[1] - back[1] * right[0]])   # back x right
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, up, back, position
    return pose


def object_rng(seed, uid):
    """A random generator that depends only on (seed, uid): the same object gets the same views on any rank."""
    digest = hashlib.sha256(f"{seed}:{uid}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def sample_pairs(seed, uid, count, delta_azimuth_deg, elevation_range):
    """`count` (source, target) views: source azimuth uniform, elevation uniform in range; target turned by delta."""
    rng = object_rng(seed, uid)
    low, high = elevation_range
    pairs = []
    for _ in range(count):
        azimuth = float(rng.uniform(0.0, 360.0))
        elevation = float(rng.uniform(low, high))
        target = (azimuth + delta_azimuth_deg) % 360.0
        pairs.append((View(azimuth, elevation), View(target, elevation)))
    return pairs
