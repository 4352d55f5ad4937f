"""De-identification by the Basic Application Level Confidentiality Profile (PS3.15 E).

An export of a study for research or a second opinion leaves Carnet de-identified
by the basic profile of PS3.15 Annex E, without any of its options:

* each attribute of Table E.1-1 gets the action of the "Basic Profile" column,
  at every depth of nesting (the table is :data:`BASIC_PROFILE`, below);
* every private attribute is removed, and so are the overlay (60xx) and curve
  (50xx) repeating groups, whose data and comments the table removes;
* UIDs with action U are replaced by UIDs derived from the original and a secret
  salt held by one export (:class:`UidMap`), so references between the instances of
  the export stay consistent and nothing links them back without the salt;
* Patient's Name and Patient ID get the export's pseudonym (the Z action allows a
  dummy value), Patient Identity Removed is ``YES``, and De-identification Method
  and its code sequence (113100, DCM) name the profile.

What the basic profile does not do, this module does not do either: pixel data is
kept byte for byte, so text burned into the image (common in ultrasound and
secondary capture, flagged by Burned In Annotation) stays readable; free text in
attributes the table keeps is not cleaned; dates other than those listed are kept.
The Clean Pixel Data, Clean Descriptors and Retain ... options are not implemented.

Action codes (PS3.15 Table E.1-1 and E.3): D replace with a dummy value, Z replace
with an empty value (or a dummy), X remove, K keep, C clean (treated as D: no
cleaning of meaning is attempted), U replace the UID. A combination such as X/Z/D
resolves to the weakest action the IOD allows: X for a Type 3 attribute, Z for Type
2, D for Type 1 (:data:`REQUIRED_TYPE`); X/Z/U* keeps a required sequence and
replaces the UIDs inside it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO
from typing import BinaryIO, Final

import pydicom
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from carnet_imaging.dicomjson import ERROR_DOMAIN, malformed, read_part10
from carnet_kit.errors import InvalidArgument

__all__ = [
    "BASIC_PROFILE",
    "DEIDENTIFICATION_METHOD",
    "REQUIRED_TYPE",
    "ExportSummary",
    "UidMap",
    "deidentify_instance",
    "export_study_zip",
]

#: PS3.15 Table E.1-1, "Basic Profile" column: (tag, keyword, action). Repeating
#: groups (overlays, curves) and private attributes are handled by rule, not here.
BASIC_PROFILE: Final[tuple[tuple[int, str, str], ...]] = (
    (0x00080050, "AccessionNumber", "Z"),
    (0x00184000, "AcquisitionComments", "X"),
    (0x00400555, "AcquisitionContextSequence", "X"),
    (0x00080022, "AcquisitionDate", "X/Z"),
    (0x0008002A, "AcquisitionDateTime", "X/Z/D"),
    (0x00181400, "AcquisitionDeviceProcessingDescription", "X/D"),
    (0x00189424, "AcquisitionProtocolDescription", "X"),
    (0x00080032, "AcquisitionTime", "X/Z"),
    (0x00080017, "AcquisitionUID", "U"),
    (0x00404035, "ActualHumanPerformersSequence", "X"),
    (0x001021B0, "AdditionalPatientHistory", "X"),
    (0x00380010, "AdmissionID", "X"),
    (0x00380020, "AdmittingDate", "X"),
    (0x00081084, "AdmittingDiagnosesCodeSequence", "X"),
    (0x00081080, "AdmittingDiagnosesDescription", "X"),
    (0x00380021, "AdmittingTime", "X"),
    (0x00001000, "AffectedSOPInstanceUID", "X"),
    (0x00102110, "Allergies", "X"),
    (0x40000010, "Arbitrary", "X"),
    (0x0040A078, "AuthorObserverSequence", "X"),
    (0x00101081, "BranchOfService", "X"),
    (0x00181007, "CassetteID", "X"),
    (0x00120060, "ClinicalTrialCoordinatingCenterName", "Z"),
    (0x00120082, "ClinicalTrialProtocolEthicsCommitteeApprovalNumber", "X"),
    (0x00120081, "ClinicalTrialProtocolEthicsCommitteeName", "D"),
    (0x00120020, "ClinicalTrialProtocolID", "D"),
    (0x00120021, "ClinicalTrialProtocolName", "Z"),
    (0x00120072, "ClinicalTrialSeriesDescription", "X"),
    (0x00120071, "ClinicalTrialSeriesID", "X"),
    (0x00120030, "ClinicalTrialSiteID", "Z"),
    (0x00120031, "ClinicalTrialSiteName", "Z"),
    (0x00120010, "ClinicalTrialSponsorName", "D"),
    (0x00120040, "ClinicalTrialSubjectID", "D"),
    (0x00120042, "ClinicalTrialSubjectReadingID", "D"),
    (0x00120051, "ClinicalTrialTimePointDescription", "X"),
    (0x00120050, "ClinicalTrialTimePointID", "Z"),
    (0x00209161, "ConcatenationUID", "U"),
    (0x0008009C, "ConsultingPhysicianName", "X"),
    (0x00700086, "ContentCreatorIdentificationCodeSequence", "X"),
    (0x00700084, "ContentCreatorName", "Z"),
    (0x00080023, "ContentDate", "Z/D"),
    (0x0040A730, "ContentSequence", "X"),
    (0x00080033, "ContentTime", "Z/D"),
    (0x0008010D, "ContextGroupExtensionCreatorUID", "U"),
    (0x00180010, "ContrastBolusAgent", "Z/D"),
    (0x0018A003, "ContributionDescription", "X"),
    (0x00102150, "CountryOfResidence", "X"),
    (0x00380300, "CurrentPatientLocation", "X"),
    (0x00080025, "CurveDate", "X"),
    (0x00080035, "CurveTime", "X"),
    (0x0040A07C, "CustodialOrganizationSequence", "X"),
    (0xFFFCFFFC, "DataSetTrailingPadding", "X"),
    (0x00082111, "DerivationDescription", "X"),
    (0x0018700A, "DetectorID", "X/D"),
    (0x00181000, "DeviceSerialNumber", "X/Z/D"),
    (0x00181002, "DeviceUID", "U"),
    (0x04000100, "DigitalSignatureUID", "X"),
    (0xFFFAFFFA, "DigitalSignaturesSequence", "X"),
    (0x00209164, "DimensionOrganizationUID", "U"),
    (0x00380040, "DischargeDiagnosisDescription", "X"),
    (0x4008011A, "DistributionAddress", "X"),
    (0x40080119, "DistributionName", "X"),
    (0x300A0013, "DoseReferenceUID", "U"),
    (0x00189517, "EndAcquisitionDateTime", "X"),
    (0x00102160, "EthnicGroup", "X"),
    (0x00404011, "ExpectedCompletionDateTime", "X"),
    (0x00080058, "FailedSOPInstanceUIDList", "U"),
    (0x0070031A, "FiducialUID", "U"),
    (0x00402017, "FillerOrderNumberImagingServiceRequest", "Z"),
    (0x00209158, "FrameComments", "X"),
    (0x00200052, "FrameOfReferenceUID", "U"),
    (0x00181008, "GantryID", "X"),
    (0x00181005, "GeneratorID", "X"),
    (0x00700001, "GraphicAnnotationSequence", "D"),
    (0x00404037, "HumanPerformerName", "X"),
    (0x00404036, "HumanPerformerOrganization", "X"),
    (0x00880200, "IconImageSequence", "X"),
    (0x00084000, "IdentifyingComments", "X"),
    (0x00204000, "ImageComments", "X"),
    (0x00284000, "ImagePresentationComments", "X"),
    (0x00402400, "ImagingServiceRequestComments", "X"),
    (0x40080300, "Impressions", "X"),
    (0x00080012, "InstanceCreationDate", "X"),
    (0x00080013, "InstanceCreationTime", "X"),
    (0x00080014, "InstanceCreatorUID", "U"),
    (0x00080081, "InstitutionAddress", "X"),
    (0x00080082, "InstitutionCodeSequence", "X/Z/D"),
    (0x00080080, "InstitutionName", "X/Z/D"),
    (0x00081040, "InstitutionalDepartmentName", "X"),
    (0x00081041, "InstitutionalDepartmentTypeCodeSequence", "X"),
    (0x00101050, "InsurancePlanIdentification", "X"),
    (0x00401011, "IntendedRecipientsOfResultsIdentificationSequence", "X"),
    (0x40080111, "InterpretationApproverSequence", "X"),
    (0x4008010C, "InterpretationAuthor", "X"),
    (0x40080115, "InterpretationDiagnosisDescription", "X"),
    (0x40080202, "InterpretationIDIssuer", "X"),
    (0x40080102, "InterpretationRecorder", "X"),
    (0x4008010B, "InterpretationText", "X"),
    (0x4008010A, "InterpretationTranscriber", "X"),
    (0x00083010, "IrradiationEventUID", "U"),
    (0x00380011, "IssuerOfAdmissionID", "X"),
    (0x00100021, "IssuerOfPatientID", "X"),
    (0x00380061, "IssuerOfServiceEpisodeID", "X"),
    (0x00281214, "LargePaletteColorLookupTableUID", "U"),
    (0x001021D0, "LastMenstrualDate", "X"),
    (0x04000404, "MAC", "X"),
    (0x00020003, "MediaStorageSOPInstanceUID", "U"),
    (0x00102000, "MedicalAlerts", "X"),
    (0x00101090, "MedicalRecordLocator", "X"),
    (0x00101080, "MilitaryRank", "X"),
    (0x04000550, "ModifiedAttributesSequence", "X"),
    (0x00203406, "ModifiedImageDescription", "X"),
    (0x00203401, "ModifyingDeviceID", "X"),
    (0x00203404, "ModifyingDeviceManufacturer", "X"),
    (0x00081060, "NameOfPhysiciansReadingStudy", "X"),
    (0x00401010, "NamesOfIntendedRecipientsOfResults", "X"),
    (0x0040A171, "ObservationUID", "U"),
    (0x00102180, "Occupation", "X"),
    (0x00081072, "OperatorIdentificationSequence", "X"),
    (0x00081070, "OperatorsName", "X/Z/D"),
    (0x04000561, "OriginalAttributesSequence", "X"),
    (0x00402010, "OrderCallbackPhoneNumber", "X"),
    (0x00402008, "OrderEnteredBy", "X"),
    (0x00402009, "OrderEntererLocation", "X"),
    (0x00101000, "OtherPatientIDs", "X"),
    (0x00101002, "OtherPatientIDsSequence", "X"),
    (0x00101001, "OtherPatientNames", "X"),
    (0x00281199, "PaletteColorLookupTableUID", "U"),
    (0x0040A07A, "ParticipantSequence", "X"),
    (0x00101040, "PatientAddress", "X"),
    (0x00104000, "PatientComments", "X"),
    (0x00100020, "PatientID", "Z"),
    (0x00101010, "PatientAge", "X"),
    (0x00100030, "PatientBirthDate", "Z"),
    (0x00101005, "PatientBirthName", "X"),
    (0x00100032, "PatientBirthTime", "X"),
    (0x00380400, "PatientInstitutionResidence", "X"),
    (0x00100050, "PatientInsurancePlanCodeSequence", "X"),
    (0x00101060, "PatientMotherBirthName", "X"),
    (0x00100010, "PatientName", "Z"),
    (0x00100101, "PatientPrimaryLanguageCodeSequence", "X"),
    (0x00100102, "PatientPrimaryLanguageModifierCodeSequence", "X"),
    (0x001021F0, "PatientReligiousPreference", "X"),
    (0x00100040, "PatientSex", "Z"),
    (0x00102203, "PatientSexNeutered", "X/Z"),
    (0x00101020, "PatientSize", "X"),
    (0x00102154, "PatientTelephoneNumbers", "X"),
    (0x00101030, "PatientWeight", "X"),
    (0x00380500, "PatientState", "X"),
    (0x00400243, "PerformedLocation", "X"),
    (0x00400254, "PerformedProcedureStepDescription", "X"),
    (0x00400250, "PerformedProcedureStepEndDate", "X"),
    (0x00404051, "PerformedProcedureStepEndDateTime", "X"),
    (0x00400251, "PerformedProcedureStepEndTime", "X"),
    (0x00400253, "PerformedProcedureStepID", "X"),
    (0x00400244, "PerformedProcedureStepStartDate", "X"),
    (0x00404050, "PerformedProcedureStepStartDateTime", "X"),
    (0x00400245, "PerformedProcedureStepStartTime", "X"),
    (0x00400241, "PerformedStationAETitle", "X"),
    (0x00404030, "PerformedStationGeographicLocationCodeSequence", "X"),
    (0x00400242, "PerformedStationName", "X"),
    (0x00404028, "PerformedStationNameCodeSequence", "X"),
    (0x00081052, "PerformingPhysicianIdentificationSequence", "X"),
    (0x00081050, "PerformingPhysicianName", "X"),
    (0x00401102, "PersonAddress", "X"),
    (0x00401101, "PersonIdentificationCodeSequence", "D"),
    (0x0040A123, "PersonName", "D"),
    (0x00401103, "PersonTelephoneNumbers", "X"),
    (0x40080114, "PhysicianApprovingInterpretation", "X"),
    (0x00081062, "PhysiciansReadingStudyIdentificationSequence", "X"),
    (0x00081048, "PhysiciansOfRecord", "X"),
    (0x00081049, "PhysiciansOfRecordIdentificationSequence", "X"),
    (0x00402016, "PlacerOrderNumberImagingServiceRequest", "Z"),
    (0x00181004, "PlateID", "X"),
    (0x00400012, "PreMedication", "X"),
    (0x001021C0, "PregnancyStatus", "X"),
    (0x00181030, "ProtocolName", "X/D"),
    (0x00402001, "ReasonForTheImagingServiceRequest", "X"),
    (0x00321030, "ReasonForStudy", "X"),
    (0x04000402, "ReferencedDigitalSignatureSequence", "X"),
    (0x30060024, "ReferencedFrameOfReferenceUID", "U"),
    (0x00404023, "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID", "U"),
    (0x00081140, "ReferencedImageSequence", "X/Z/U*"),
    (0x00380004, "ReferencedPatientAliasSequence", "X"),
    (0x00101100, "ReferencedPatientPhotoSequence", "X"),
    (0x00081120, "ReferencedPatientSequence", "X"),
    (0x00081111, "ReferencedPerformedProcedureStepSequence", "X/Z/D"),
    (0x04000403, "ReferencedSOPInstanceMACSequence", "X"),
    (0x00081155, "ReferencedSOPInstanceUID", "U"),
    (0x00041511, "ReferencedSOPInstanceUIDInFile", "U"),
    (0x00081110, "ReferencedStudySequence", "X/Z"),
    (0x00080092, "ReferringPhysicianAddress", "X"),
    (0x00080096, "ReferringPhysicianIdentificationSequence", "X"),
    (0x00080090, "ReferringPhysicianName", "Z"),
    (0x00080094, "ReferringPhysicianTelephoneNumbers", "X"),
    (0x00102152, "RegionOfResidence", "X"),
    (0x300600C2, "RelatedFrameOfReferenceUID", "U"),
    (0x00400275, "RequestAttributesSequence", "X"),
    (0x00321070, "RequestedContrastAgent", "X"),
    (0x00401400, "RequestedProcedureComments", "X"),
    (0x00321060, "RequestedProcedureDescription", "X/Z"),
    (0x00401001, "RequestedProcedureID", "X"),
    (0x00401005, "RequestedProcedureLocation", "X"),
    (0x00001001, "RequestedSOPInstanceUID", "U"),
    (0x00321032, "RequestingPhysician", "X"),
    (0x00321033, "RequestingService", "X"),
    (0x00102299, "ResponsibleOrganization", "X"),
    (0x00102297, "ResponsiblePerson", "X"),
    (0x40084000, "ResultsComments", "X"),
    (0x40080118, "ResultsDistributionListSequence", "X"),
    (0x40080042, "ResultsIDIssuer", "X"),
    (0x300E0008, "ReviewerName", "X/Z"),
    (0x00404034, "ScheduledHumanPerformersSequence", "X"),
    (0x0038001E, "ScheduledPatientInstitutionResidence", "X"),
    (0x0040000B, "ScheduledPerformingPhysicianIdentificationSequence", "X"),
    (0x00400006, "ScheduledPerformingPhysicianName", "X"),
    (0x00400007, "ScheduledProcedureStepDescription", "X"),
    (0x00400004, "ScheduledProcedureStepEndDate", "X"),
    (0x00400005, "ScheduledProcedureStepEndTime", "X"),
    (0x00400011, "ScheduledProcedureStepLocation", "X"),
    (0x00400002, "ScheduledProcedureStepStartDate", "X"),
    (0x00400003, "ScheduledProcedureStepStartTime", "X"),
    (0x00400001, "ScheduledStationAETitle", "X"),
    (0x00404027, "ScheduledStationGeographicLocationCodeSequence", "X"),
    (0x00400010, "ScheduledStationName", "X"),
    (0x00404025, "ScheduledStationNameCodeSequence", "X"),
    (0x00321020, "ScheduledStudyLocation", "X"),
    (0x00321021, "ScheduledStudyLocationAETitle", "X"),
    (0x00080021, "SeriesDate", "X"),
    (0x0008103E, "SeriesDescription", "X"),
    (0x0020000E, "SeriesInstanceUID", "U"),
    (0x00080031, "SeriesTime", "X"),
    (0x00380062, "ServiceEpisodeDescription", "X"),
    (0x00380060, "ServiceEpisodeID", "X"),
    (0x001021A0, "SmokingStatus", "X"),
    (0x00080018, "SOPInstanceUID", "U"),
    (0x00082112, "SourceImageSequence", "X/Z/U*"),
    (0x00380050, "SpecialNeeds", "X"),
    (0x00400554, "SpecimenUID", "U"),
    (0x00081010, "StationName", "X/Z/D"),
    (0x00880140, "StorageMediaFileSetUID", "U"),
    (0x00324000, "StudyComments", "X"),
    (0x00080020, "StudyDate", "Z"),
    (0x00081030, "StudyDescription", "X"),
    (0x00200010, "StudyID", "Z"),
    (0x00320012, "StudyIDIssuer", "X"),
    (0x0020000D, "StudyInstanceUID", "U"),
    (0x00080030, "StudyTime", "Z"),
    (0x00200200, "SynchronizationFrameOfReferenceUID", "U"),
    (0x0040DB0D, "TemplateExtensionCreatorUID", "U"),
    (0x0040DB0C, "TemplateExtensionOrganizationUID", "U"),
    (0x40004000, "TextComments", "X"),
    (0x20300020, "TextString", "X"),
    (0x00080201, "TimezoneOffsetFromUTC", "X"),
    (0x00880910, "TopicAuthor", "X"),
    (0x00880912, "TopicKeywords", "X"),
    (0x00880906, "TopicSubject", "X"),
    (0x00880904, "TopicTitle", "X"),
    (0x00620021, "TrackingUID", "U"),
    (0x00081195, "TransactionUID", "U"),
    (0x0040A124, "UID", "U"),
    (0x0040A088, "VerifyingObserverIdentificationCodeSequence", "Z"),
    (0x0040A075, "VerifyingObserverName", "D"),
    (0x0040A073, "VerifyingObserverSequence", "D"),
    (0x0040A027, "VerifyingOrganization", "X"),
    (0x00384000, "VisitComments", "X"),
)

#: Types (PS3.3) that decide the combined actions, for the CT, MR, US and SC image
#: IODs and their modules; an attribute not listed is Type 3 there.
REQUIRED_TYPE: Final[dict[str, str]] = {
    "ContentDate": "2",
    "ContentTime": "2",
    "ContrastBolusAgent": "2",
}

#: Where the enhanced multi-frame IODs (Enhanced CT, MR, US; Enhanced General
#: Equipment, Multi-frame Functional Groups) require more than :data:`REQUIRED_TYPE`.
REQUIRED_TYPE_ENHANCED: Final[dict[str, str]] = {
    **REQUIRED_TYPE,
    "ContentDate": "1",
    "ContentTime": "1",
    "AcquisitionDateTime": "1",
    "DeviceSerialNumber": "1",
}

_ENHANCED_SOP_CLASSES: Final = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image Storage
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image Storage
        "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume Storage
    }
)

#: Value of De-identification Method (0012,0063).
DEIDENTIFICATION_METHOD: Final = "PS3.15 E.1 Basic Application Confidentiality Profile"

_PROFILE_CODE: Final = ("113100", "DCM", "Basic Application Confidentiality Profile")
_ACTIONS: Final = {tag: action for tag, _keyword, action in BASIC_PROFILE}
_KEYWORDS: Final = {tag: keyword for tag, keyword, _action in BASIC_PROFILE}
_PATIENT_NAME: Final = 0x00100010
_PATIENT_ID: Final = 0x00100020
_PSEUDONYM: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
# Dummy values for D, chosen valid for each VR and free of meaning.
_DUMMY: Final[dict[str, object]] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "AT": 0,
    "CS": "ANONYMOUS",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "FD": 0.0,
    "FL": 0.0,
    "IS": "0",
    "LO": "ANONYMOUS",
    "LT": "ANONYMOUS",
    "OB": b"\x00\x00",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "OW": b"\x00\x00",
    "PN": "ANONYMOUS",
    "SH": "ANONYMOUS",
    "SL": 0,
    "SS": 0,
    "ST": "ANONYMOUS",
    "SV": 0,
    "TM": "000000",
    "UC": "ANONYMOUS",
    "UL": 0,
    "UN": b"\x00\x00",
    "UR": "urn:anonymous",
    "US": 0,
    "UT": "ANONYMOUS",
    "UV": 0,
}


class UidMap:
    """Replaces UIDs for one export: the same UID always gets the same new UID.

    The new UID is ``2.25.`` followed by the decimal value of a 128-bit UUID (version
    8, RFC 9562) whose bits are the HMAC-SHA256 of the original UID under the
    export's secret salt. Two exports with different salts share no UID; without
    the salt the original cannot be recovered or confirmed.

    Parameters
    ----------
    salt : bytes
        The export's secret, at least 16 bytes. Keep it only as long as instances
        may still be added to the same export.
    """

    def __init__(self, salt: bytes) -> None:
        if len(salt) < 16:
            raise ValueError("the UID salt must be at least 16 bytes")
        self._salt = bytes(salt)
        self._known: dict[str, str] = {}

    @classmethod
    def new(cls) -> UidMap:
        """A map with a fresh random salt, for one export."""
        return cls(secrets.token_bytes(32))

    def replace(self, uid: str) -> str:
        """The new UID standing for `uid` in this export."""
        uid = uid.strip("\x00 ")
        new = self._known.get(uid)
        if new is None:
            digest = bytearray(hmac.new(self._salt, uid.encode("ascii", "replace"), hashlib.sha256).digest()[:16])
            digest[6] = digest[6] & 0x0F | 0x80  # version 8: custom
            digest[8] = digest[8] & 0x3F | 0x80  # RFC 9562 variant
            new = self._known[uid] = f"2.25.{int.from_bytes(digest, 'big')}"
        return new


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What :func:`export_study_zip` wrote."""

    instances: int
    series: int


def deidentify_instance(part10: bytes, *, uid_map: UidMap, pseudonym: str) -> bytes:
    """De-identify one instance by the basic profile; return a new Part 10 file.

    Parameters
    ----------
    part10 : bytes
        The original Part 10 file.
    uid_map : UidMap
        The export's UID replacements, shared by all its instances.
    pseudonym : str
        Stands for the patient in Patient's Name and Patient ID: letters, digits,
        space, ``.``, ``_`` or ``-``, at most 64 characters (so that it fits every
        character set the file may declare).

    Returns
    -------
    bytes
        A Part 10 file in the original transfer syntax, pixel data unchanged, with
        new file meta information and a zeroed preamble.

    Raises
    ------
    carnet_kit.errors.InvalidArgument
        With reason ``DICOM_MALFORMED`` when the bytes are not a readable, whole file,
        or reason ``INVALID_ARGUMENT`` when the pseudonym is not acceptable.
    """
    return _deidentify(part10, uid_map, pseudonym).part10


@dataclass(frozen=True, slots=True)
class _Deidentified:
    part10: bytes
    series_instance_uid: str
    sop_instance_uid: str


def _deidentify(part10: bytes, uid_map: UidMap, pseudonym: str) -> _Deidentified:
    if not _PSEUDONYM.fullmatch(pseudonym):
        raise InvalidArgument(
            "the pseudonym must be 1 to 64 letters, digits, spaces, '.', '_' or '-'",
            field="pseudonym",
            domain=ERROR_DOMAIN,
        )
    dataset = read_part10(part10)
    if not dataset.get("SOPInstanceUID") or not dataset.get("SOPClassUID"):
        raise malformed("DICOM instance without SOP Class UID or SOP Instance UID")
    transfer_syntax = dataset.file_meta.get("TransferSyntaxUID")
    enhanced = str(dataset.SOPClassUID) in _ENHANCED_SOP_CLASSES
    _Deidentifier(uid_map, REQUIRED_TYPE_ENHANCED if enhanced else REQUIRED_TYPE).clean(dataset)

    dataset.PatientName = pseudonym
    dataset.PatientID = pseudonym
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = DEIDENTIFICATION_METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = _PROFILE_CODE
    dataset.DeidentificationMethodCodeSequence = Sequence([code])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    dataset.file_meta = meta
    dataset.preamble = b"\x00" * 128
    out = BytesIO()
    try:
        pydicom.dcmwrite(out, dataset, enforce_file_format=True)
    except (ValueError, TypeError, OverflowError, struct.error) as exc:
        raise malformed(f"cannot write the de-identified instance: {exc}") from exc
    return _Deidentified(out.getvalue(), str(dataset.get("SeriesInstanceUID", "")), str(dataset.SOPInstanceUID))


class _Deidentifier:
    """Applies the profile to a data set and, recursively, to its sequence items."""

    def __init__(self, uid_map: UidMap, required_type: dict[str, str]) -> None:
        self._uid_map = uid_map
        self._required_type = required_type

    def clean(self, dataset: Dataset) -> None:
        for tag in list(dataset.keys()):
            group = tag >> 16
            if group & 1 or tag & 0xFFFF == 0 or group & 0xFF00 in (0x5000, 0x6000):
                # Private attributes, group lengths (stale once values change),
                # curves and overlay planes go.
                del dataset[tag]
                continue
            action = _ACTIONS.get(tag)
            element = dataset[tag]
            if action is not None:
                action = _resolve(action, self._required_type.get(_KEYWORDS[tag], "3"))
                if action == "X":
                    del dataset[tag]
                    continue
                if action == "Z" or (action == "D" and element.VR == "SQ"):
                    # A dummy sequence would need dummy items: an empty one is conformant for Type 2.
                    element.value = empty_value_for_VR(element.VR)
                    continue
                if action == "U" or (action == "D" and element.VR == "UI"):
                    element.value = self._new_uids(element)
                    continue
                if action == "D":
                    element.value = _DUMMY.get(element.VR, "ANONYMOUS")
                    continue
            if element.VR == "SQ":
                for item in element.value:
                    self.clean(item)

    def _new_uids(self, element: DataElement) -> object:
        value = element.value
        if isinstance(value, MultiValue | list):
            return [self._uid_map.replace(str(uid)) for uid in value if uid]
        return self._uid_map.replace(str(value)) if value else value


def _resolve(action: str, required_type: str) -> str:
    """The single action a table entry comes to for an attribute of the given type."""
    if "/" not in action:
        return "D" if action == "C" else action
    options = action.split("/")
    if required_type == "1":
        preferred = ("D", "U*", "Z", "X")
    elif required_type == "2":
        preferred = ("Z", "D", "U*", "X")
    else:
        preferred = ("X", "Z", "D", "U*")
    chosen = next(option for option in preferred if option in options)
    # U* keeps the sequence; the U entries inside it replace its UIDs.
    return "K" if chosen == "U*" else chosen


def export_study_zip(
    instances: Iterable[bytes],
    out: BinaryIO,
    *,
    uid_map: UidMap,
    pseudonym: str,
    compression: int = zipfile.ZIP_DEFLATED,
) -> ExportSummary:
    """Write the de-identified instances of a study to `out` as a ZIP archive.

    Instances are read, de-identified and written one at a time, so memory holds one
    instance whatever the size of the study; `out` need not be seekable (a response
    body will do). The archive holds ``<SeriesInstanceUID>/<SOPInstanceUID>.dcm``
    with the new UIDs; an instance given twice is written once. Entries carry no
    time stamp, so the archive is a function of its inputs and salt.

    Parameters
    ----------
    instances : iterable of bytes
        The Part 10 files of the study.
    out : binary file
        Where the archive goes; left open.
    uid_map : UidMap
        The export's UID replacements.
    pseudonym : str
        The patient's pseudonym (see :func:`deidentify_instance`).
    compression : int, optional
        A :mod:`zipfile` compression method; ``ZIP_STORED`` for pixel data that is
        already compressed.

    Returns
    -------
    ExportSummary
        How many instances and series were written.

    Raises
    ------
    carnet_kit.errors.InvalidArgument
        As :func:`deidentify_instance`; the archive is then incomplete.
    """
    written: set[str] = set()
    series: set[str] = set()
    with zipfile.ZipFile(out, mode="w", compression=compression) as archive:
        for part10 in instances:
            deidentified = _deidentify(part10, uid_map, pseudonym)
            series_uid = deidentified.series_instance_uid or "no-series"
            name = f"{series_uid}/{deidentified.sop_instance_uid}.dcm"
            if name in written:
                continue
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            archive.writestr(info, deidentified.part10)
            written.add(name)
            series.add(series_uid)
    return ExportSummary(instances=len(written), series=len(series))
