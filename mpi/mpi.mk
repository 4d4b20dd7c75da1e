# mpi/mpi.mk -- avq-mpi, the sharded index on Open MPI (issue 14), included
# by the top Makefile (`-include mpi/mpi.mk`).
#
#   make mpi         build/avq-mpi, when mpicc is installed (Debian:
#                    openmpi-bin libopenmpi-dev); otherwise a notice
#
# avq-mpi is a client of the public header alone, like the avq CLI: it is
# compiled with -Iinclude only and links the shared library by path with an
# RPATH of $ORIGIN.  The core library never links MPI.

MPICC ?= mpicc
MPI_BIN = $(BUILD)/avq-mpi
HAVE_MPICC := $(shell command -v $(MPICC) >/dev/null 2>&1 && echo yes)

.PHONY: mpi
ifeq ($(HAVE_MPICC),yes)
mpi: $(MPI_BIN)

$(MPI_BIN): mpi/avq_mpi.c include/avq.h $(SHARED_LIB) $(SONAME_LINK)
	@mkdir -p $(dir $@)
	$(MPICC) -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -Iinclude $(SANITIZE) $(CFLAGS) \
	    -o $@ mpi/avq_mpi.c $(SHARED_LIB) $(CLI_RPATH) -lm
else
mpi:
	@echo "mpi: $(MPICC) not found (install openmpi-bin libopenmpi-dev): build/avq-mpi skipped"
endif
