bench/cache-sim.sh 30 2000 19000
