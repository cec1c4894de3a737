// Timing driver for scripts/bench_vs_n2p2.py: n2p2's libnnp on the boxes of an input.data.
//
// Usage: n2p2_bench_driver POTENTIAL_DIR INPUT_DATA REPEATS TASKS [RESULTS_OUT]
//   POTENTIAL_DIR  input.nn, scaling.data, weights.%03zu.data (e.g. from `hdnnp export`)
//   INPUT_DATA     boxes in n2p2's input.data format (same units as the potential)
//   REPEATS        passes over all boxes per task
//   TASKS          comma-separated subset of nl,sf,sfd,energy,forces
//   RESULTS_OUT    optional: energy and forces of every box (one energy+forces evaluation),
//                  written as "box energy" lines followed by the force lines
//
// Every evaluation starts from a fresh copy of the box as read (no neighbour list, no symmetry
// functions), made outside the timed region, so each timed evaluation redoes all its work:
//   nl      Structure::calculateNeighborList(max cutoff)
//   sf      neighbour list + Mode::calculateSymmetryFunctionGroups(values)
//   sfd     neighbour list + Mode::calculateSymmetryFunctionGroups(values + derivatives)
//   energy  neighbour list + SF groups (values) + atomic NNs + Mode::calculateEnergy
//   forces  neighbour list + SF groups (with derivatives) + atomic NNs (dE/dG)
//           + calculateEnergy + calculateForces
// This is what Mode::evaluateNNP (nnp-predict) does for a short-range HDNNP; the group variant
// of the symmetry functions is n2p2's default. One warm-up pass over the first boxes precedes
// the timing. Prints one JSON object per task: {"task", "boxes", "seconds", "boxes_per_s"}.

#include "Mode.h"
#include "Structure.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std;
using namespace nnp;

static void evaluate(Mode& mode, Structure& s, string const& task)
{
    s.calculateNeighborList(mode.getMaxCutoffRadius(), false);
    if (task == "nl") return;
    bool const derivatives = (task == "sfd" || task == "forces");
    mode.calculateSymmetryFunctionGroups(s, derivatives);
    if (task == "sf" || task == "sfd") return;
    mode.calculateAtomicNeuralNetworks(s, derivatives);
    mode.calculateEnergy(s);
    if (task == "forces") mode.calculateForces(s);
}

static double timeTask(Mode& mode, vector<Structure> const& boxes, string const& task,
                       size_t repeats)
{
    typedef chrono::steady_clock clock;
    double seconds = 0.0;
    for (size_t r = 0; r < repeats; ++r)
    {
        for (size_t b = 0; b < boxes.size(); ++b)
        {
            Structure s = boxes[b];  // fresh copy, untimed
            clock::time_point t0 = clock::now();
            evaluate(mode, s, task);
            clock::time_point t1 = clock::now();
            seconds += chrono::duration<double>(t1 - t0).count();
            if (s.numAtoms == 0) throw runtime_error("empty box");
        }
    }
    return seconds;
}

int main(int argc, char* argv[])
{
    if (argc < 5)
    {
        cerr << "usage: " << argv[0]
             << " POTENTIAL_DIR INPUT_DATA REPEATS TASKS [RESULTS_OUT]\n";
        return 2;
    }
    string const dir = string(argv[1]) + "/";
    string const dataFile = argv[2];
    size_t const repeats = (size_t)atoi(argv[3]);
    vector<string> tasks;
    {
        stringstream ss(argv[4]);
        string t;
        while (getline(ss, t, ',')) if (!t.empty()) tasks.push_back(t);
    }
    for (size_t i = 0; i < tasks.size(); ++i)
    {
        string const& t = tasks[i];
        if (t != "nl" && t != "sf" && t != "sfd" && t != "energy" && t != "forces")
        {
            cerr << "unknown task " << t << "\n";
            return 2;
        }
    }

    Mode mode;
    mode.log.writeToStdout = false;
    mode.initialize();
    mode.loadSettingsFile(dir + "input.nn");
    mode.setupGeneric(dir);
    mode.setupSymmetryFunctionScaling(dir + "scaling.data");
    map<string, string> formats;
    formats["short"] = dir + "weights.%03zu.data";
    mode.setupNeuralNetworkWeights(formats);
    mode.setupSymmetryFunctionStatistics(false, false, false, false);

    vector<Structure> boxes;
    {
        ifstream file(dataFile.c_str());
        if (!file) throw runtime_error("cannot open " + dataFile);
        while (file >> ws, file.peek() != EOF)
        {
            boxes.push_back(Structure());
            boxes.back().setElementMap(mode.elementMap);
            boxes.back().index = boxes.size() - 1;
            boxes.back().readFromFile(file);
        }
    }
    if (boxes.empty()) throw runtime_error("no boxes in " + dataFile);

    if (argc > 5)
    {
        ofstream out(argv[5]);
        out.precision(17);
        for (size_t b = 0; b < boxes.size(); ++b)
        {
            Structure s = boxes[b];
            evaluate(mode, s, "forces");
            mode.addEnergyOffset(s, false);
            out << "box " << b << " " << s.numAtoms << " " << s.energy << "\n";
            for (size_t i = 0; i < s.atoms.size(); ++i)
                out << s.atoms[i].f[0] << " " << s.atoms[i].f[1] << " "
                    << s.atoms[i].f[2] << "\n";
        }
    }

    vector<Structure> warm(boxes.begin(), boxes.begin() + min<size_t>(2, boxes.size()));
    for (size_t i = 0; i < tasks.size(); ++i)
    {
        timeTask(mode, warm, tasks[i], 1);
        double const seconds = timeTask(mode, boxes, tasks[i], repeats);
        size_t const n = boxes.size() * repeats;
        printf("{\"task\": \"%s\", \"boxes\": %zu, \"seconds\": %.9g, "
               "\"boxes_per_s\": %.9g}\n", tasks[i].c_str(), n, seconds, n / seconds);
        fflush(stdout);
    }
    return 0;
}
