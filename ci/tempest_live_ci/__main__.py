from tempest_live_ci.cli import main

main()
