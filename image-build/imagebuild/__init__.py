"""The SD image: its build (`make image`) and its boot test (`make image-test`)."""
