from deepprl.cli import main

main()
