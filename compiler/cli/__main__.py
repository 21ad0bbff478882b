from bertc.compiler.cli import main

main()
