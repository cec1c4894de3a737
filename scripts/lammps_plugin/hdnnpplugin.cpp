// hdnnpplugin.cpp -- register n2p2's "pair_style hdnnp" with LAMMPS's PLUGIN package.
//
// Written for hdnnp (modelled on LAMMPS's examples/plugins); the pair style itself is
// n2p2's own PairHDNNP (src/interface/LAMMPS/src/ML-HDNNP/pair_hdnnp.cpp), compiled from
// the n2p2 sources by scripts/build_lammps_plugin.sh. In LAMMPS:
//
//     plugin load /path/to/hdnnpplugin.so
//     pair_style  hdnnp <cutoff> dir <potential dir> ... cflength 1.0 cfenergy 1.0
//     pair_coeff  * * <element of type 1> <element of type 2> ...
//
// LAMMPS_VERSION (e.g. "22 Jul 2025") is defined on the compiler command line: LAMMPS
// compares it with its own version when loading and only warns on a mismatch, but the C++
// ABI (class layouts of Pair, LAMMPS, ...) must match the LAMMPS that loads the plugin.

#include "lammpsplugin.h"

#include "pair_hdnnp.h"

#ifndef LAMMPS_VERSION
#error "define LAMMPS_VERSION, e.g. -DLAMMPS_VERSION='\"22 Jul 2025\"'"
#endif

using namespace LAMMPS_NS;

static Pair *create_pair_hdnnp(LAMMPS *lmp)
{
  return new PairHDNNP(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  lammpsplugin_t plugin;

  plugin.version = LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "hdnnp";
  plugin.info = "n2p2 HDNNP pair style (pair_style hdnnp), built as a plugin for hdnnp exports";
  plugin.author = "Andreas Singraber (n2p2); plugin wrapper: hdnnp";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &create_pair_hdnnp;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
