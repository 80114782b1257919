from netspec.cli import run

# Guarded: --nproc's spawned workers import this module again (as __mp_main__) and must not
# start a second CLI.
if __name__ == "__main__":
    run()
