"""Shared tiny fixtures for the network/training tests: random descriptor data, teacher networks."""

import numpy as np

from hdnnp.training.loss import ElementBlock, TrainingData, evaluate


def random_data(rng, n_frames=4, elements=(29, 16), n_features=None, with_forces=True, n_atoms_range=(3, 7),
                pairs_per_row=3, force_fraction=0.7):
    """Random frames of mixed elements with random scaled descriptors in [-1, 1] and random sparse
    descriptor derivatives; energies/forces random (replace them with a teacher's)."""
    n_features = n_features or {29: 4, 16: 3}
    n_atoms = rng.integers(*n_atoms_range, size=n_frames)
    atom_offset = np.concatenate([[0], np.cumsum(n_atoms)])
    species = rng.choice(elements, size=atom_offset[-1])
    for f in range(n_frames):  # every element in every frame
        species[atom_offset[f]:atom_offset[f] + len(elements)] = elements
    blocks = {}
    for z in elements:
        vals, rf, ai, ro, pr, pa, dv, po = [], [], [], [0], [], [], [], [0]
        n_rows = 0
        for f in range(n_frames):
            atoms = np.flatnonzero(species[atom_offset[f]:atom_offset[f + 1]] == z) + atom_offset[f]
            for a in atoms:
                vals.append(rng.uniform(-1, 1, n_features[z]))
                rf.append(f)
                ai.append(a)
                k = min(pairs_per_row, n_atoms[f])
                for j in rng.choice(np.arange(atom_offset[f], atom_offset[f + 1]), size=k, replace=False):
                    pr.append(n_rows)
                    pa.append(j)
                    dv.append(rng.normal(size=(n_features[z], 3)))
                n_rows += 1
            ro.append(n_rows)
            po.append(len(pr))
        blocks[z] = ElementBlock(np.array(vals), np.array(rf), np.array(ai), np.array(ro),
                                 np.array(pr), np.array(pa), np.array(dv).reshape(-1, n_features[z], 3),
                                 np.array(po))
    forces = rng.normal(size=(atom_offset[-1], 3)) if with_forces else None
    mask = rng.uniform(size=atom_offset[-1]) < force_fraction if with_forces else None
    if with_forces:
        mask[0] = True
    return TrainingData(elements=tuple(sorted(elements)), energy=rng.normal(-10, 1, n_frames),
                        n_atoms=n_atoms, atom_offset=atom_offset, blocks=blocks, forces=forces,
                        force_mask=mask, frame_index=np.arange(n_frames))


def teacher_labels(data, arch, theta):
    """Replace energies and forces of ``data`` by those of the network ``theta`` (exactly learnable)."""
    ev = evaluate(arch, theta, data, 0.0, gradient=False, forces=True)
    data.energy = ev.energy_pred.copy()
    data.forces = ev.forces_pred.copy()
    return data


def lj_frames(rng, n_frames, box_angstrom=7.0, jitter_angstrom=0.25):
    """Argon-like Lennard-Jones 'liquid' boxes: 8 atoms on a perturbed simple-cubic grid in a periodic
    cube, energies (eV) and forces (eV/Å) from ASE's smooth LJ (sigma 3 Å, epsilon 10 meV, rc 6 Å)."""
    from ase import Atoms
    from ase.calculators.lj import LennardJones

    calc = LennardJones(sigma=3.0, epsilon=0.01, rc=6.0, smooth=True)
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], float) * (box_angstrom / 2)
    frames = []
    for _ in range(n_frames):
        atoms = Atoms("Ar8", positions=grid + rng.normal(0, jitter_angstrom, grid.shape),
                      cell=[box_angstrom] * 3, pbc=True)
        atoms.calc = calc
        atoms.info["energy"] = atoms.get_potential_energy()
        atoms.arrays["ref_forces"] = atoms.get_forces()
        atoms.calc = None
        frames.append(atoms)
    return frames


def fitted_feature_set(frames, n_features=12):
    """The default candidate grid fitted (selection + ranging) on the frames' raw values."""
    from hdnnp.descriptors import FeatureSet, compute_raw

    elements = sorted({int(z) for a in frames for z in a.numbers})
    fs = FeatureSet.default(elements)
    raw = [compute_raw(a.positions, a.cell.array, a.pbc, a.numbers, fs) for a in frames]
    species = np.concatenate([a.numbers for a in frames])
    raw = np.concatenate(raw)
    fs.fit({z: raw[species == z] for z in elements}, n_features=n_features)
    return fs


def frames_to_data(frames, fs, derivatives=True):
    from hdnnp.descriptors import compute_descriptors
    from hdnnp.training.loss import data_from_descriptors

    desc = [compute_descriptors(a.positions, a.cell.array, a.pbc, a.numbers, fs, derivatives=derivatives)
            for a in frames]
    return data_from_descriptors(desc, [len(a) for a in frames], [a.info["energy"] for a in frames],
                                 [a.arrays["ref_forces"] for a in frames] if derivatives else None)


def write_prepared(path, train_atoms, predict_atoms, temperatures=(100.0, 200.0)):
    """A prepared.h5 (stage 'prepare') from ASE Atoms carrying info['energy'] / arrays['ref_forces']."""
    import h5py

    from hdnnp.frames import Frame
    from hdnnp.h5io import FrameSetWriter, write_root_attrs

    with h5py.File(path, "w") as h5:
        write_root_attrs(h5, "prepare")
        elements = sorted({int(z) for a in list(train_atoms) + list(predict_atoms) for z in a.numbers})
        h5.attrs["elements"] = np.array(elements, np.int32)
        for name, images in (("train", train_atoms), ("predict", predict_atoms)):
            w = FrameSetWriter(h5.create_group(name), with_forces=True)
            w.append([Frame(positions=a.positions, species=a.numbers, cell=a.cell.array, pbc=a.pbc,
                            energy=a.info["energy"], forces=a.arrays["ref_forces"],
                            temperature=temperatures[k % len(temperatures)] if name == "train" else 150.0,
                            step=k, source=name) for k, a in enumerate(images)])
            w.close()
    return path


def lj_symmetry_files(directory, frames, n_train, n_features):
    """prepared.h5 (the first ``n_train`` frames train, the rest predict) and symmetry.h5 with
    ``n_features`` selected features, written in ``directory`` (returned)."""
    from hdnnp.stages.symmetry import symmetry

    write_prepared(directory / "prepared.h5", frames[:n_train], frames[n_train:])
    symmetry(directory / "prepared.h5", directory / "symmetry.h5", n_features=n_features, device="cpu", quiet=True)
    return directory


def finite_difference_forces(energy, positions, h=1e-6):
    """-dE/dr by central differences of ``energy(positions) -> float`` (eV), (n, 3) eV/Å."""
    positions = np.asarray(positions, float)
    fd = np.zeros_like(positions)
    for i in range(len(positions)):
        for c in range(3):
            p, m = positions.copy(), positions.copy()
            p[i, c] += h
            m[i, c] -= h
            fd[i, c] = -(energy(p) - energy(m)) / (2 * h)
    return fd


def write_smooth_argon_model(directory):
    """model.h5 of a smooth random potential for Ar (random tanh networks on Lennard-Jones-argon
    features) and a prepared.h5 with Ar start frames in ``directory``: every MD step a fraction of
    a millisecond (the MD tests' potential)."""
    from hdnnp import nn
    from hdnnp.model import Potential

    frames = lj_frames(np.random.default_rng(3), 10)
    fs = fitted_feature_set(frames, n_features=8)
    arch = nn.Architecture(elements=(18,), n_inputs={18: 8}, hidden=(6,))
    theta = nn.init_parameters(arch, np.random.default_rng(1), {18: -0.05}, output_scale=0.02)
    Potential(fs, arch, theta, {18: -0.05}).save(directory / "model.h5")
    write_prepared(directory / "prepared.h5", frames[:8], frames[8:])
    return directory
