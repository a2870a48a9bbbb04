"""Transfer learning the brief's three ways (001): train all, train the last layers, add a new FC."""
