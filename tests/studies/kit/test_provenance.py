"""studies.kit.provenance: what a run records about the machine it ran on."""

from __future__ import annotations

from studies.kit.provenance import cpu_facts, machine_facts


def test_cpu_facts_read_the_model_and_vector_extensions(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nflags\t\t: fpu sse sse2 avx avx2 fma avx512f ht\n\n"
        "processor\t: 1\nmodel name\t: Example CPU @ 2.0GHz\nflags\t\t: fpu sse sse2 avx avx2 fma avx512f ht\n"
    )
    assert cpu_facts(str(cpuinfo)) == {
        "model": "Example CPU @ 2.0GHz",
        "vector_extensions": ["avx", "avx2", "avx512f", "fma", "sse", "sse2"],
    }


def test_cpu_facts_without_cpuinfo_say_none_rather_than_fail(tmp_path):
    facts = cpu_facts(str(tmp_path / "absent"))
    assert facts["vector_extensions"] is None and set(facts) == {"model", "vector_extensions"}


def test_machine_facts_carry_the_cpu():
    assert set(machine_facts()["cpu"]) == {"model", "vector_extensions"}
