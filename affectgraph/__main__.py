from affectgraph.cli import main

main()
