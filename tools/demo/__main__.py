from tools.demo import main

main()
