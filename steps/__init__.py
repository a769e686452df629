"""A study's steps over the base and the plugins (the Lab), and its reports. No Prefect here:
tasks/ wrap these steps."""
