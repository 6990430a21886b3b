# Cluster environment for dsgq jobs: load modules here and define launch(), which starts one MPI rank per
# Slurm task. Copy to slurm/env/<cluster>.sh for a site (module loads, --mpi flavour) and select it with
# DSGQ_CLUSTER=<cluster>.
# module load openmpi hdf5   # site-specific

launch() {
  if [[ -n "${SLURM_JOB_ID:-}" ]] && command -v srun >/dev/null; then
    # Open MPI 4 on Debian works with --mpi=pmix (pmi2/none do not); --kill-on-bad-exit ends every rank when one dies.
    srun --mpi="${DSGQ_SRUN_MPI:-pmix}" --kill-on-bad-exit=1 --cpu-bind=none "$@"
  else
    mpirun -np "${NP:-1}" --bind-to none "$@"
  fi
}
