"""Genetics (karyotype and gene mutations) with the timepoint they were taken at (A14).

`not_tested` is distinct from `wild_type`: it means unknown, never negative. A gene left out of
the record is `not_tested`.
"""

from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BeforeValidator, Field, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from engine.record.base import FieldError, RecordModel
from engine.record.units import NonNegative, Percent

KaryotypeCode = Literal[
    "t(8;21)", "inv(16)", "t(16;16)", "t(9;11)", "t(6;9)", "t(v;11q23.3)", "t(9;22)",
    "inv(3)", "t(3;3)", "t(8;16)", "t(3q26.2;v)", "-5", "del(5q)", "-7", "-17", "abn(17p)",
    "complex", "monosomal", "hyperdiploid_trisomies_only", "normal",
]


def _yaml_int(value: Any) -> Any:
    # YAML reads `- -7` as the integer -7: give it back its karyotype spelling.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# A karyotype code, or the integer YAML makes of the numeric ones (-5, -7, -17).
KaryotypeItem = Annotated[KaryotypeCode, BeforeValidator(_yaml_int, json_schema_input_type=Union[
    KaryotypeCode, Literal[tuple(int(c) for c in get_args(KaryotypeCode) if c.lstrip("-").isdigit())]])]
GeneStatus = Literal["mutated", "wild_type", "not_tested"]
_STATUS_DOC = "mutated|wild_type|not_tested (not_tested = unknown, not negative)"


class Mutation(RecordModel):
    """Result for one gene. A bare status string ("mutated") is accepted as shorthand."""

    status: GeneStatus = Field("not_tested", description=f"Gene status: {_STATUS_DOC}.")
    vaf_pct: Percent | None = Field(None, description=(
        "Variant allele frequency (%), when reported (ELN 2022 TP53 uses VAF >= 10 %)."))

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"status": data} if isinstance(data, str) else data

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # the schema says what _shorthand accepts: a bare status, or the mapping
        return {"anyOf": [{"enum": list(get_args(GeneStatus))}, handler(schema)]}

    @model_validator(mode="after")
    def _detail_needs_mutation(self) -> "Mutation":
        for name in type(self).model_fields:
            if name == "status" or getattr(self, name) in (None, False):
                continue
            if self.status != "mutated":
                raise FieldError(name, f"{name} given for a gene with status {self.status}",
                                 expected="status mutated, or no detail")
        return self


class Flt3Itd(Mutation):
    """FLT3 internal tandem duplication, with its allelic ratio (ELN 2017 high/low at 0.5)."""

    allelic_ratio: NonNegative | None = Field(None, description=(
        "FLT3-ITD allelic ratio (mutant/wild-type, a ratio without unit)."))


class Cebpa(Mutation):
    """CEBPA, with the qualifiers the ELN 2017 and 2022 risk tables use."""

    biallelic: bool | None = Field(None, description="Biallelic CEBPA mutation (ELN 2017).")
    bzip_inframe: bool | None = Field(None, description=(
        "In-frame mutation of the bZIP domain (ELN 2022)."))


def _gene(name: str) -> Any:
    return Field(default_factory=Mutation, description=f"{name}: {_STATUS_DOC}.")


class Mutations(RecordModel):
    """Gene mutations. Keys are lower-case gene names; FLT3-ITD is `flt3_itd`."""

    npm1: Mutation = _gene("NPM1")
    flt3_itd: Flt3Itd = Field(default_factory=Flt3Itd, description=(
        f"FLT3-ITD: {_STATUS_DOC}; with allelic_ratio."))
    flt3_tkd: Mutation = _gene("FLT3-TKD")
    cebpa: Cebpa = Field(default_factory=Cebpa, description=(
        f"CEBPA: {_STATUS_DOC}; with biallelic and bzip_inframe."))
    runx1: Mutation = _gene("RUNX1")
    asxl1: Mutation = _gene("ASXL1")
    tp53: Mutation = _gene("TP53 (give vaf_pct, %)")
    bcor: Mutation = _gene("BCOR")
    ezh2: Mutation = _gene("EZH2")
    sf3b1: Mutation = _gene("SF3B1")
    srsf2: Mutation = _gene("SRSF2")
    stag2: Mutation = _gene("STAG2")
    u2af1: Mutation = _gene("U2AF1")
    zrsr2: Mutation = _gene("ZRSR2")
    idh1: Mutation = _gene("IDH1")
    idh2: Mutation = _gene("IDH2")
    kit: Mutation = _gene("KIT")


FUSION_RE = r"^[A-Za-z0-9]+(::[A-Za-z0-9]+|-r)$"


class Fusion(RecordModel):
    """A gene fusion or rearrangement tested by RT-PCR, FISH or sequencing (so that a cryptic or
    karyotype-failed RUNX1::RUNX1T1 or a KMT2A rearrangement is recorded as what was found)."""

    name: str = Field(max_length=40, pattern=FUSION_RE, description=(
        "Fusion as GENE1::GENE2 (HGNC symbols, e.g. RUNX1::RUNX1T1, CBFB::MYH11, MLLT3::KMT2A, "
        "BCR::ABL1, DEK::NUP214, KAT6A::CREBBP, GATA2::MECOM), or GENE-r for a rearrangement "
        "with any partner (KMT2A-r from a break-apart FISH probe, MECOM-r)."))
    status: Literal["detected", "not_detected"] = Field(description=(
        "detected|not_detected (a fusion not listed is not tested: unknown, never negative)."))
    method: Literal["rt_pcr", "fish", "ngs", "rna_seq", "other"] | None = Field(None, description=(
        "How it was tested: rt_pcr|fish|ngs|rna_seq|other."))


def fusion_slug(name: str) -> str:
    """`RUNX1::RUNX1T1` -> `runx1_runx1t1`, `KMT2A-r` -> `kmt2a_rearranged` (a fact-name spelling)."""
    low = name.strip().lower()
    return low[:-2] + "_rearranged" if low.endswith("-r") else low.replace("::", "_")


class Genetics(RecordModel):
    """Cytogenetics and molecular genetics from one timepoint."""

    timepoint: Literal["diagnosis", "relapse", "screening"] | None = Field(None, description=(
        "When the sample was taken: diagnosis|relapse|screening (ELN risk is defined at "
        "diagnosis, A14)."))
    karyotype_done: bool | None = Field(None, description=(
        "Metaphase karyotype (or FISH) performed and evaluable (true/false)."))
    karyotype: str | None = Field(None, max_length=500, description=(
        "Karyotype as reported, ISCN string (free text, not interpreted)."))
    karyotype_findings: list[KaryotypeItem] = Field(default_factory=list, description=(
        "Controlled codes for the findings (no unit): t(8;21), inv(16), t(16;16), t(9;11), "
        "t(6;9), t(v;11q23.3), t(9;22), inv(3), t(3;3), t(8;16), t(3q26.2;v), -5, del(5q), -7, "
        "-17, abn(17p), complex, monosomal, hyperdiploid_trisomies_only, normal. t(v;11q23.3) = a "
        "KMT2A translocation with a partner other than MLLT3 (t(9;11) has its own code); complex = "
        "three or more unrelated abnormalities as counted by the cytogeneticist; "
        "hyperdiploid_trisomies_only = hyperdiploid with three or more trisomies (or polysomies) "
        "and no structural abnormality (ELN 2022 does not count it as complex)."))
    mutations: Mutations = Field(default_factory=Mutations, description=(
        "Gene mutation results; a gene left out is not_tested."))
    fusions: list[Fusion] = Field(default_factory=list, description=(
        "Fusions tested outside the karyotype: [{name, status, method}]; a fusion left out is "
        "not tested."))

    @model_validator(mode="after")
    def _findings_consistent(self) -> "Genetics":
        if self.karyotype_findings and self.karyotype_done is False:
            raise FieldError("karyotype_findings", "karyotype findings given but "
                             "karyotype_done is false", expected="karyotype_done true or null")
        seen: set[str] = set()
        for i, f in enumerate(self.fusions):
            slug = fusion_slug(f.name)
            if slug in seen:
                raise FieldError(f"fusions[{i}].name", f"fusion {f.name!r} listed twice",
                                 expected="one result per fusion")
            seen.add(slug)
        if "normal" in self.karyotype_findings and len(self.karyotype_findings) > 1:
            raise FieldError("karyotype_findings", "'normal' listed with abnormal findings",
                             expected="'normal' alone")
        return self
