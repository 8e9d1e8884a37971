package gen

// Word pools and code tables for the synthetic generator. Names, places and
// clinical codes are common public facts (US first names and surnames, US
// cities with their ZIP prefixes and area codes, LOINC/SNOMED/RxNorm codes).

var femaleGiven = []string{
	"Olivia", "Emma", "Ava", "Sophia", "Isabella", "Mia", "Amelia", "Harper", "Evelyn", "Abigail",
	"Emily", "Elizabeth", "Sofia", "Madison", "Avery", "Ella", "Scarlett", "Grace", "Chloe", "Victoria",
	"Riley", "Aria", "Lily", "Aubrey", "Zoey", "Penelope", "Layla", "Nora", "Camila", "Hannah",
	"Maria", "Guadalupe", "Lucia", "Valentina", "Ximena", "Daniela", "Mariana", "Fernanda", "Rosa", "Carmen",
	"Mei", "Yuna", "Hana", "Priya", "Ananya", "Aisha", "Fatima", "Nia", "Imani", "Keisha",
	"Patricia", "Linda", "Barbara", "Susan", "Jessica", "Sarah", "Karen", "Nancy", "Margaret", "Dorothy",
	"Betty", "Sandra", "Ashley", "Donna", "Michelle", "Carol", "Amanda", "Melissa", "Deborah", "Stephanie",
	"Rebecca", "Laura", "Sharon", "Cynthia", "Kathleen", "Amy", "Angela", "Shirley", "Brenda", "Pamela",
	"Nicole", "Ruth", "Katherine", "Samantha", "Christine", "Catherine", "Virginia", "Debra", "Rachel", "Janet",
	"Thu", "Linh", "Ngoc", "Siobhan", "Ingrid", "Astrid", "Anneliese", "Giulia", "Francesca", "Zofia",
}

var maleGiven = []string{
	"Liam", "Noah", "Oliver", "Elijah", "James", "William", "Benjamin", "Lucas", "Henry", "Theodore",
	"Jack", "Levi", "Alexander", "Jackson", "Mateo", "Daniel", "Michael", "Mason", "Sebastian", "Ethan",
	"Logan", "Owen", "Samuel", "Jacob", "Asher", "Aiden", "John", "Joseph", "Wyatt", "David",
	"Jose", "Juan", "Carlos", "Luis", "Miguel", "Javier", "Alejandro", "Diego", "Santiago", "Rafael",
	"Wei", "Hiroshi", "Kenji", "Min-jun", "Arjun", "Rohan", "Omar", "Ahmed", "Malik", "Darnell",
	"Robert", "Richard", "Thomas", "Charles", "Christopher", "Matthew", "Anthony", "Mark", "Donald", "Steven",
	"Paul", "Andrew", "Joshua", "Kenneth", "Kevin", "Brian", "George", "Timothy", "Ronald", "Edward",
	"Jason", "Jeffrey", "Ryan", "Gary", "Nicholas", "Eric", "Stephen", "Jonathan", "Larry", "Justin",
	"Scott", "Brandon", "Frank", "Gregory", "Raymond", "Patrick", "Dennis", "Jerry", "Tyler", "Aaron",
	"Minh", "Quang", "Declan", "Lars", "Magnus", "Giovanni", "Marco", "Tomasz", "Dmitri", "Kwame",
}

var familyNames = []string{
	"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
	"Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
	"Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
	"Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
	"Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
	"Gomez", "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes",
	"Stewart", "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper",
	"Peterson", "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson",
	"Watson", "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes",
	"Price", "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jimenez",
	"Chen", "Wang", "Li", "Zhang", "Liu", "Tran", "Pham", "Le", "Park", "Choi",
	"Tanaka", "Yamamoto", "Sato", "Suzuki", "Shah", "Singh", "Kumar", "Gupta", "Khan", "Ali",
	"O'Brien", "O'Connor", "McCarthy", "Sullivan", "Murray", "Kowalski", "Nowak", "Schmidt", "Muller", "Fischer",
	"Rossi", "Russo", "Ferrari", "Esposito", "Johansson", "Larsen", "Okafor", "Mensah", "Abebe", "Haddad",
	"Washington", "Jefferson", "Banks", "Freeman", "Dawson", "Holloway", "Whitfield", "Delgado", "Navarro", "Vega",
	"St. Clair", "Van der Berg", "De la Cruz", "Nakamura", "Hoang", "Vo", "Dang", "Bui", "Fitzgerald", "Byrne",
}

// place is a US city with its state, a ZIP prefix (3 digits) and area codes.
type place struct {
	City, State, ZipPrefix string
	AreaCodes              []string
}

var places = []place{
	{"Dallas", "TX", "752", []string{"214", "469", "972"}},
	{"Plano", "TX", "750", []string{"469", "972"}},
	{"Irving", "TX", "750", []string{"214", "972"}},
	{"Fort Worth", "TX", "761", []string{"817", "682"}},
	{"Arlington", "TX", "760", []string{"817", "682"}},
	{"Houston", "TX", "770", []string{"713", "281", "832"}},
	{"Austin", "TX", "787", []string{"512", "737"}},
	{"San Antonio", "TX", "782", []string{"210", "726"}},
	{"Madison", "WI", "537", []string{"608"}},
	{"Verona", "WI", "535", []string{"608"}},
	{"Milwaukee", "WI", "532", []string{"414"}},
	{"Chicago", "IL", "606", []string{"312", "773", "872"}},
	{"Evanston", "IL", "602", []string{"847", "224"}},
	{"Minneapolis", "MN", "554", []string{"612"}},
	{"Boston", "MA", "021", []string{"617", "857"}},
	{"Worcester", "MA", "016", []string{"508", "774"}},
	{"Springfield", "MA", "011", []string{"413"}},
	{"Providence", "RI", "029", []string{"401"}},
	{"Hartford", "CT", "061", []string{"860", "959"}},
	{"Albany", "NY", "122", []string{"518"}},
	{"Brooklyn", "NY", "112", []string{"718", "347", "929"}},
	{"Philadelphia", "PA", "191", []string{"215", "267"}},
	{"Pittsburgh", "PA", "152", []string{"412", "878"}},
	{"Baltimore", "MD", "212", []string{"410", "443"}},
	{"Richmond", "VA", "232", []string{"804"}},
	{"Raleigh", "NC", "276", []string{"919", "984"}},
	{"Charlotte", "NC", "282", []string{"704", "980"}},
	{"Atlanta", "GA", "303", []string{"404", "470", "678"}},
	{"Nashville", "TN", "372", []string{"615", "629"}},
	{"Columbus", "OH", "432", []string{"614", "380"}},
	{"Cleveland", "OH", "441", []string{"216"}},
	{"Indianapolis", "IN", "462", []string{"317", "463"}},
	{"Detroit", "MI", "482", []string{"313"}},
	{"St. Louis", "MO", "631", []string{"314"}},
	{"Kansas City", "MO", "641", []string{"816"}},
	{"Omaha", "NE", "681", []string{"402", "531"}},
	{"Denver", "CO", "802", []string{"303", "720"}},
	{"Phoenix", "AZ", "850", []string{"602", "480", "623"}},
	{"Albuquerque", "NM", "871", []string{"505"}},
	{"Salt Lake City", "UT", "841", []string{"801", "385"}},
	{"Seattle", "WA", "981", []string{"206"}},
	{"Portland", "OR", "972", []string{"503", "971"}},
	{"Sacramento", "CA", "958", []string{"916", "279"}},
	{"San Diego", "CA", "921", []string{"619", "858"}},
	{"Los Angeles", "CA", "900", []string{"213", "323", "310"}},
	{"Miami", "FL", "331", []string{"305", "786"}},
	{"Orlando", "FL", "328", []string{"407", "689"}},
	{"Tampa", "FL", "336", []string{"813", "656"}},
	{"New Orleans", "LA", "701", []string{"504"}},
	{"Birmingham", "AL", "352", []string{"205", "659"}},
}

var streetNames = []string{
	"Main", "Oak", "Maple", "Cedar", "Elm", "Pine", "Washington", "Lake", "Hill", "Park",
	"Walnut", "Spring", "North", "Ridge", "Church", "Willow", "Mill", "Sunset", "Railroad", "Jackson",
	"Cherry", "Highland", "Meadow", "Forest", "Lincoln", "Madison", "Jefferson", "River", "Hickory", "Magnolia",
	"Chestnut", "Dogwood", "Franklin", "Valley", "Lakeview", "Sycamore", "Birch", "Mockingbird", "Preston", "Greenville",
	"Bluebonnet", "Prairie", "Orchard", "Harbor", "College", "Market", "Center", "Adams", "Monroe", "Poplar",
}

var streetSuffixes = []string{"St", "Ave", "Rd", "Dr", "Ln", "Blvd", "Ct", "Way", "Pl", "Pkwy", "Cir", "Trl"}

var emailDomains = []string{"example.com", "example.org", "example.net", "mail.example.com"}

// coding is a code with its system and display text.
type coding struct{ System, Code, Display string }

const (
	sysLOINC    = "http://loinc.org"
	sysSNOMED   = "http://snomed.info/sct"
	sysRxNorm   = "http://www.nlm.nih.gov/research/umls/rxnorm"
	sysICD10    = "http://hl7.org/fhir/sid/icd-10-cm"
	sysUCUM     = "http://unitsofmeasure.org"
	sysNPI      = "http://hl7.org/fhir/sid/us-npi"
	sysV2_0203  = "http://terminology.hl7.org/CodeSystem/v2-0203"
	sysObsCat   = "http://terminology.hl7.org/CodeSystem/observation-category"
	sysCondCat  = "http://terminology.hl7.org/CodeSystem/condition-category"
	sysCondClin = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	sysCondVer  = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	sysActCode  = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysMarital  = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
	sysPartType = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	sysAllClin  = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
	sysAllVer   = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
	sysCovClass = "http://terminology.hl7.org/CodeSystem/coverage-class"
	sysActCov   = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysSubRel   = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
	sysDocCat   = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
	sysApptType = "http://terminology.hl7.org/CodeSystem/v2-0276"
	sysSvcCat   = "http://terminology.hl7.org/CodeSystem/service-category"
	sysOrgType  = "http://terminology.hl7.org/CodeSystem/organization-type"
	sysRoleCode = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
	sysLang     = "urn:ietf:bcp:47"
	sysRace     = "urn:oid:2.16.840.1.113883.6.238"
	extRace     = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
	extEthn     = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
	extBirthSex = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
)

// condition is a diagnosis with its SNOMED and ICD-10-CM codes.
type condition struct {
	SNOMED, ICD10, Display string
	Chronic                bool
}

var conditions = []condition{
	{"38341003", "I10", "Essential hypertension", true},
	{"44054006", "E11.9", "Type 2 diabetes mellitus", true},
	{"15777000", "R73.03", "Prediabetes", true},
	{"55822004", "E78.5", "Hyperlipidemia", true},
	{"195967001", "J45.909", "Asthma", true},
	{"13645005", "J44.9", "Chronic obstructive pulmonary disease", true},
	{"35489007", "F32.9", "Depressive disorder", true},
	{"197480006", "F41.9", "Anxiety disorder", true},
	{"239873007", "M17.9", "Osteoarthritis of knee", true},
	{"40930008", "E03.9", "Hypothyroidism", true},
	{"49436004", "I48.91", "Atrial fibrillation", true},
	{"162864005", "E66.9", "Body mass index 30+ - obesity", true},
	{"271737000", "D64.9", "Anemia", true},
	{"446096008", "J30.2", "Perennial allergic rhinitis", true},
	{"444814009", "J01.90", "Viral sinusitis", false},
	{"195662009", "J02.9", "Acute viral pharyngitis", false},
	{"10509002", "J20.9", "Acute bronchitis", false},
	{"65363002", "H66.90", "Otitis media", false},
	{"43878008", "J02.0", "Streptococcal sore throat", false},
	{"44465007", "S93.409A", "Sprain of ankle", false},
	{"68566005", "N39.0", "Urinary tract infection", false},
	{"279039007", "M54.50", "Low back pain", false},
	{"37796009", "G43.909", "Migraine", true},
	{"84757009", "G40.909", "Epilepsy", true},
}

// vital is a vital-sign or lab observation kind.
type vital struct {
	LOINC, Display, Unit string
	Min, Max             float64
	Decimals             int
	Category             string // vital-signs | laboratory
}

var vitals = []vital{
	{"8867-4", "Heart rate", "/min", 52, 104, 0, "vital-signs"},
	{"9279-1", "Respiratory rate", "/min", 11, 22, 0, "vital-signs"},
	{"8310-5", "Body temperature", "Cel", 36.1, 38.4, 1, "vital-signs"},
	{"29463-7", "Body weight", "kg", 48, 128, 1, "vital-signs"},
	{"8302-2", "Body height", "cm", 150, 196, 1, "vital-signs"},
	{"39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 18, 41, 1, "vital-signs"},
	{"2708-6", "Oxygen saturation in Arterial blood", "%", 92, 100, 0, "vital-signs"},
}

var labs = []vital{
	{"2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 68, 190, 0, "laboratory"},
	{"4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.6, 9.8, 1, "laboratory"},
	{"2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 130, 290, 0, "laboratory"},
	{"18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay", "mg/dL", 55, 190, 0, "laboratory"},
	{"2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", 30, 90, 0, "laboratory"},
	{"2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", 60, 320, 0, "laboratory"},
	{"718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 10.5, 17.5, 1, "laboratory"},
	{"6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 3.5, 12.5, 1, "laboratory"},
	{"777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 140, 420, 0, "laboratory"},
	{"2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.5, 1.9, 2, "laboratory"},
	{"2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 132, 147, 0, "laboratory"},
	{"2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.3, 5.4, 1, "laboratory"},
	{"3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", 0.3, 6.5, 2, "laboratory"},
}

// medication is an RxNorm-coded drug with a typical sig.
type medication struct{ RxNorm, Display, Sig string }

var medications = []medication{
	{"314076", "lisinopril 10 MG Oral Tablet", "Take 1 tablet by mouth once daily"},
	{"197361", "amlodipine 5 MG Oral Tablet", "Take 1 tablet by mouth once daily"},
	{"617310", "atorvastatin 20 MG Oral Tablet", "Take 1 tablet by mouth at bedtime"},
	{"314231", "simvastatin 10 MG Oral Tablet", "Take 1 tablet by mouth at bedtime"},
	{"861007", "metformin hydrochloride 500 MG Oral Tablet", "Take 1 tablet by mouth twice daily with meals"},
	{"310798", "hydrochlorothiazide 25 MG Oral Tablet", "Take 1 tablet by mouth every morning"},
	{"855332", "warfarin sodium 5 MG Oral Tablet", "Take as directed per INR"},
	{"197604", "digoxin 0.125 MG Oral Tablet", "Take 1 tablet by mouth once daily"},
	{"313782", "acetaminophen 325 MG Oral Tablet", "Take 2 tablets by mouth every 6 hours as needed for pain"},
	{"310965", "ibuprofen 200 MG Oral Tablet", "Take 2 tablets by mouth every 8 hours as needed"},
	{"849574", "naproxen sodium 220 MG Oral Tablet", "Take 1 tablet by mouth every 12 hours as needed"},
	{"308182", "amoxicillin 250 MG Oral Capsule", "Take 1 capsule by mouth three times daily for 10 days"},
	{"562251", "amoxicillin 250 MG / clavulanate 125 MG Oral Tablet", "Take 1 tablet by mouth every 12 hours for 7 days"},
	{"834061", "penicillin V potassium 250 MG Oral Tablet", "Take 1 tablet by mouth four times daily for 10 days"},
	{"895994", "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler", "Inhale 2 puffs twice daily"},
	{"665078", "loratadine 5 MG Chewable Tablet", "Chew 1 tablet once daily"},
	{"746030", "atenolol 50 MG / chlorthalidone 25 MG Oral Tablet", "Take 1 tablet by mouth once daily"},
}

// allergy is a substance with its code and category.
type allergy struct{ System, Code, Display, Category, Reaction string }

var allergies = []allergy{
	{sysRxNorm, "7980", "Penicillin G", "medication", "Hives"},
	{sysRxNorm, "10831", "Sulfamethoxazole / trimethoprim", "medication", "Rash"},
	{sysRxNorm, "1191", "Aspirin", "medication", "Wheezing"},
	{sysRxNorm, "2670", "Codeine", "medication", "Nausea"},
	{sysSNOMED, "91935009", "Allergy to peanuts", "food", "Anaphylaxis"},
	{sysSNOMED, "300913006", "Shellfish allergy", "food", "Swelling of lips"},
	{sysSNOMED, "425525006", "Allergy to dairy product", "food", "Abdominal pain"},
	{sysSNOMED, "418689008", "Allergy to grass pollen", "environment", "Sneezing"},
	{sysSNOMED, "232350006", "House dust mite allergy", "environment", "Rhinorrhea"},
	{sysSNOMED, "424213003", "Allergy to bee venom", "environment", "Anaphylaxis"},
	{sysSNOMED, "300916003", "Latex allergy", "environment", "Contact dermatitis"},
}

// payor is an insurance company or government program.
type payor struct{ Name, Plan, Type string }

var payors = []payor{
	{"Aetna", "Aetna Choice POS II", "commercial"},
	{"Blue Cross Blue Shield", "Blue Advantage HMO", "commercial"},
	{"UnitedHealthcare", "UHC Choice Plus", "commercial"},
	{"Cigna", "Cigna Open Access Plus", "commercial"},
	{"Humana", "Humana Gold Plus HMO", "medicare-advantage"},
	{"Medicare", "Medicare Part B", "medicare"},
	{"Medicaid", "State Medicaid", "medicaid"},
}

// specialty is a practitioner specialty (NUCC taxonomy) with its credential.
type specialty struct{ Code, Display, Credential string }

var specialties = []specialty{
	{"207Q00000X", "Family Medicine", "MD"},
	{"207R00000X", "Internal Medicine", "MD"},
	{"208000000X", "Pediatrics", "MD"},
	{"207RC0000X", "Cardiovascular Disease", "MD"},
	{"207N00000X", "Dermatology", "DO"},
	{"363L00000X", "Nurse Practitioner", "NP"},
	{"363A00000X", "Physician Assistant", "PA-C"},
}

// visitType is an appointment/encounter reason.
type visitType struct{ Code, Display string }

var visitTypes = []visitType{
	{"185349003", "Encounter for check up"},
	{"390906007", "Follow-up encounter"},
	{"185345009", "Encounter for symptom"},
	{"410620009", "Well child visit"},
	{"308335008", "Patient encounter procedure"},
	{"439740005", "Postoperative follow-up visit"},
}

var maritalStatuses = []coding{
	{sysMarital, "M", "Married"},
	{sysMarital, "S", "Never Married"},
	{sysMarital, "D", "Divorced"},
	{sysMarital, "W", "Widowed"},
	{sysMarital, "L", "Legally Separated"},
}

// race is an OMB race category (CDC race and ethnicity code system).
var races = []coding{
	{sysRace, "2106-3", "White"},
	{sysRace, "2054-5", "Black or African American"},
	{sysRace, "2028-9", "Asian"},
	{sysRace, "1002-5", "American Indian or Alaska Native"},
	{sysRace, "2076-8", "Native Hawaiian or Other Pacific Islander"},
}

var ethnicities = []coding{
	{sysRace, "2135-2", "Hispanic or Latino"},
	{sysRace, "2186-5", "Not Hispanic or Latino"},
}

var languages = []coding{
	{sysLang, "en", "English"},
	{sysLang, "es", "Spanish"},
	{sysLang, "vi", "Vietnamese"},
	{sysLang, "zh", "Chinese"},
}

var noteKinds = []coding{
	{sysLOINC, "11506-3", "Progress note"},
	{sysLOINC, "34117-2", "History and physical note"},
	{sysLOINC, "18842-5", "Discharge summary"},
	{sysLOINC, "11488-4", "Consult note"},
}
