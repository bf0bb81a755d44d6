"""The crash simulator's test side: workloads, histories, the driver, the oracle, mutants, jobs.

The machinery they drive (crash devices, the write log, crash-state enumeration) is the product
package :mod:`harness.crashsim`; these modules decide what to run and judge what came back.
"""
